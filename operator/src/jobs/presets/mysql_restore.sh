# ---- mysql / mariadb restore: drop the database's tables and views, then load the dump ----
if command -v mariadb >/dev/null 2>&1; then CLIENT=mariadb; else need mysql; CLIENT=mysql; fi
need gzip
need_env MYSQL_HOST "MYSQL_HOST, MYSQL_TCP_PORT, MYSQL_USER, MYSQL_PWD, MYSQL_DATABASE"
need_env MYSQL_USER "MYSQL_HOST, MYSQL_TCP_PORT, MYSQL_USER, MYSQL_PWD, MYSQL_DATABASE"
need_env MYSQL_DATABASE "MYSQL_HOST, MYSQL_TCP_PORT, MYSQL_USER, MYSQL_PWD, MYSQL_DATABASE"
restore_begin
sql() {
    "$CLIENT" --host="$MYSQL_HOST" --port="${MYSQL_TCP_PORT:-3306}" --user="$MYSQL_USER" \
        --protocol=TCP --default-character-set=utf8mb4 "$@"
}
gzip -t "$FILE" 2>"$WORK/err" || fail "$FILE is not a valid gzip file: $(cat "$WORK/err")"
make_big
gzip -dc "$FILE" >"$BIG/restore.sql" 2>"$WORK/err" || fail "cannot decompress $FILE: $(cat "$WORK/err")"
tail -n 1 "$BIG/restore.sql" >"$WORK/last" || fail "cannot read the dump"
grep -q '^-- Dump completed' "$WORK/last" || fail "the dump in $FILE is incomplete"
# Everything checked: from here on the database changes. Tables, views and routines created
# after the backup (by the failed upgrade) are dropped as well, so the database is exactly the
# backup's.
sql --batch --skip-column-names --raw \
    --execute="SELECT table_type, table_name FROM information_schema.tables WHERE table_schema = DATABASE() UNION ALL SELECT routine_type, routine_name FROM information_schema.routines WHERE routine_schema = DATABASE()" \
    "$MYSQL_DATABASE" >"$WORK/tables" 2>"$WORK/err" ||
    fail "cannot list the tables of $MYSQL_DATABASE on $MYSQL_HOST: $(cat "$WORK/err")"
awk -F '\t' '
    BEGIN { print "SET FOREIGN_KEY_CHECKS=0;" }
    {
        name = $2
        gsub(/`/, "``", name)
        if ($1 == "VIEW") print "DROP VIEW IF EXISTS `" name "`;"
        else if ($1 == "SEQUENCE") print "DROP SEQUENCE IF EXISTS `" name "`;"
        else if ($1 == "BASE TABLE" || $1 == "SYSTEM VERSIONED") print "DROP TABLE IF EXISTS `" name "`;"
        else if ($1 == "PROCEDURE" || $1 == "FUNCTION") print "DROP " $1 " IF EXISTS `" name "`;"
        else { print "unexpected table type " $1 " of " $2 > "/dev/stderr"; bad = 1 }
    }
    END { print "SET FOREIGN_KEY_CHECKS=1;"; exit bad }
' "$WORK/tables" >"$WORK/clear.sql" 2>"$WORK/err" ||
    fail "cannot empty $MYSQL_DATABASE: $(cat "$WORK/err")"
sql "$MYSQL_DATABASE" <"$WORK/clear.sql" >"$WORK/out" 2>"$WORK/err" ||
    fail "emptying $MYSQL_DATABASE failed: $(cat "$WORK/err")"
sql --binary-mode "$MYSQL_DATABASE" <"$BIG/restore.sql" >"$WORK/out" 2>"$WORK/err" ||
    fail "loading the dump into $MYSQL_DATABASE failed (MySQL cannot roll back DDL: the database is partly restored; load $FILE by hand): $(tail -n 20 "$WORK/err")"
restore_finish

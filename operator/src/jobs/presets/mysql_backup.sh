# ---- mysql / mariadb backup: mysqldump --single-transaction of $MYSQL_DATABASE, gzip ----
if command -v mariadb-dump >/dev/null 2>&1; then DUMP=mariadb-dump; else need mysqldump; DUMP=mysqldump; fi
need gzip
need_env MYSQL_HOST "MYSQL_HOST, MYSQL_TCP_PORT, MYSQL_USER, MYSQL_PWD, MYSQL_DATABASE"
need_env MYSQL_USER "MYSQL_HOST, MYSQL_TCP_PORT, MYSQL_USER, MYSQL_PWD, MYSQL_DATABASE"
need_env MYSQL_DATABASE "MYSQL_HOST, MYSQL_TCP_PORT, MYSQL_USER, MYSQL_PWD, MYSQL_DATABASE"
# The password is read by the client from MYSQL_PWD, never put on a command line.
backup_begin
"$DUMP" --host="$MYSQL_HOST" --port="${MYSQL_TCP_PORT:-3306}" --user="$MYSQL_USER" \
    --protocol=TCP --single-transaction --routines --triggers --hex-blob --no-tablespaces \
    --default-character-set=utf8mb4 --result-file="$TMP.raw" "$MYSQL_DATABASE" \
    >"$WORK/out" 2>"$WORK/err" ||
    fail "$DUMP of database $MYSQL_DATABASE on $MYSQL_HOST failed: $(cat "$WORK/err")"
[ -s "$TMP.raw" ] || fail "$DUMP wrote nothing: the backup is empty"
# mysqldump ends a complete dump with this comment; a cut-off dump does not have it.
tail -n 1 "$TMP.raw" >"$WORK/last" || fail "cannot read the dump"
grep -q '^-- Dump completed' "$WORK/last" || fail "the dump is incomplete (no 'Dump completed' line)"
gzip -6 -c "$TMP.raw" >"$TMP" || fail "cannot compress the dump"
rm -f "$TMP.raw"
gzip -t "$TMP" || fail "the compressed dump does not verify"
backup_finish

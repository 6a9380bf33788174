# ---- postgres restore: one transaction that empties the database's tables and loads the dump ----
need pg_restore
need psql
need_env PGHOST "PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE"
need_env PGDATABASE "PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE"
export PGCONNECT_TIMEOUT="${PGCONNECT_TIMEOUT:-30}"
restore_begin
pg_restore --list "$FILE" >"$WORK/toc" 2>"$WORK/err" ||
    fail "$FILE is not a readable pg_dump archive: $(cat "$WORK/err")"
make_big
pg_restore --clean --if-exists --file="$BIG/restore.sql" "$FILE" 2>"$WORK/err" ||
    fail "pg_restore could not read $FILE: $(cat "$WORK/err")"
# Tables, views and sequences created after the backup (by the failed upgrade's migration)
# are dropped too, so the database is exactly the backup's; objects of extensions are kept.
cat >"$WORK/clear.sql" <<'SQL'
DO $apprelease$
DECLARE r record;
BEGIN
  FOR r IN
    SELECT c.relkind, n.nspname, c.relname
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
      AND n.nspname NOT IN ('pg_catalog', 'information_schema')
      AND n.nspname NOT LIKE 'pg\_%'
      AND pg_has_role(c.relowner, 'USAGE')
      AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                      AND d.objid = c.oid AND d.deptype IN ('e', 'a', 'i'))
  LOOP
    EXECUTE format('DROP %s IF EXISTS %I.%I CASCADE',
      CASE r.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW'
        WHEN 'f' THEN 'FOREIGN TABLE' WHEN 'S' THEN 'SEQUENCE' ELSE 'TABLE' END,
      r.nspname, r.relname);
  END LOOP;
END
$apprelease$;
SQL
psql --no-psqlrc --quiet --no-password --set=ON_ERROR_STOP=1 --single-transaction \
    --file="$WORK/clear.sql" --file="$BIG/restore.sql" >"$WORK/out" 2>"$WORK/err" ||
    fail "restoring database $PGDATABASE on $PGHOST failed, its transaction was rolled back: $(tail -n 20 "$WORK/err")"
restore_finish

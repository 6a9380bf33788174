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
# Everything the connecting role owns outside the system schemas (and not part of an
# extension) is dropped first — tables, views, sequences, routines, types and domains — so the
# database ends up exactly as the dump, without what the failed upgrade's migration added.
# Schemas are kept; the dump re-creates its own. It runs in the same transaction as the load.
cat >"$WORK/clear.sql" <<'SQL'
DO $apprelease$
DECLARE r record;
BEGIN
  FOR r IN
    SELECT c.relkind, n.nspname, c.relname
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S', 'c')
      AND n.nspname NOT IN ('pg_catalog', 'information_schema')
      AND n.nspname NOT LIKE 'pg\_%'
      AND pg_has_role(c.relowner, 'USAGE')
      AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                      AND d.objid = c.oid AND d.deptype IN ('e', 'a', 'i'))
  LOOP
    EXECUTE format('DROP %s IF EXISTS %I.%I CASCADE',
      CASE r.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW'
        WHEN 'f' THEN 'FOREIGN TABLE' WHEN 'S' THEN 'SEQUENCE' WHEN 'c' THEN 'TYPE'
        ELSE 'TABLE' END,
      r.nspname, r.relname);
  END LOOP;
  FOR r IN
    SELECT p.oid::regprocedure AS routine
    FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
    WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
      AND n.nspname NOT LIKE 'pg\_%'
      AND pg_has_role(p.proowner, 'USAGE')
      AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass
                      AND d.objid = p.oid AND d.deptype IN ('e', 'i'))
  LOOP
    EXECUTE format('DROP ROUTINE IF EXISTS %s CASCADE', r.routine);
  END LOOP;
  FOR r IN
    SELECT t.typtype, n.nspname, t.typname
    FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
    WHERE t.typtype IN ('e', 'd', 'r')
      AND n.nspname NOT IN ('pg_catalog', 'information_schema')
      AND n.nspname NOT LIKE 'pg\_%'
      AND pg_has_role(t.typowner, 'USAGE')
      AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_type'::regclass
                      AND d.objid = t.oid AND d.deptype IN ('e', 'i'))
  LOOP
    EXECUTE format('DROP %s IF EXISTS %I.%I CASCADE',
      CASE r.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END, r.nspname, r.typname);
  END LOOP;
END
$apprelease$;
SQL
psql --no-psqlrc --quiet --no-password --set=ON_ERROR_STOP=1 --single-transaction \
    --file="$WORK/clear.sql" --file="$BIG/restore.sql" >"$WORK/out" 2>"$WORK/err" ||
    fail "restoring database $PGDATABASE on $PGHOST failed, its transaction was rolled back: $(tail -n 20 "$WORK/err")"
restore_finish

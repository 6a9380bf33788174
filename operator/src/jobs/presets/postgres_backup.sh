# ---- postgres backup: pg_dump --format=custom of $PGDATABASE ----
need pg_dump
need pg_restore
need_env PGHOST "PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE"
need_env PGDATABASE "PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE"
export PGCONNECT_TIMEOUT="${PGCONNECT_TIMEOUT:-30}"
backup_begin
pg_dump --format=custom --compress=6 --no-password --file="$TMP" >"$WORK/out" 2>"$WORK/err" ||
    fail "pg_dump of database $PGDATABASE on $PGHOST failed: $(cat "$WORK/err")"
[ -s "$TMP" ] || fail "pg_dump wrote nothing: the backup is empty"
# A custom-format archive whose table of contents cannot be read is not a backup.
pg_restore --list "$TMP" >"$WORK/toc" 2>"$WORK/err" ||
    fail "the dump is not a readable pg_dump archive: $(cat "$WORK/err")"
[ -s "$WORK/toc" ] || fail "the dump has no table of contents"
backup_finish

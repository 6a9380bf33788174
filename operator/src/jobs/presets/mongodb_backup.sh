# ---- mongodb backup: mongodump --archive --gzip of $MONGODB_URI ----
need mongodump
need gzip
need_env MONGODB_URI "MONGODB_URI"
backup_begin
mongodump --uri="$MONGODB_URI" --archive="$TMP" --gzip >"$WORK/out" 2>"$WORK/err" ||
    fail "mongodump failed: $(tail -n 20 "$WORK/err")"
[ -s "$TMP" ] || fail "mongodump wrote nothing: the backup is empty"
gzip -t "$TMP" 2>"$WORK/err" || fail "the archive is not valid gzip: $(cat "$WORK/err")"
backup_finish

# ---- mongodb restore: mongorestore --drop from the archive ----
need mongorestore
need gzip
need_env MONGODB_URI "MONGODB_URI"
restore_begin
gzip -t "$FILE" 2>"$WORK/err" || fail "$FILE is not valid gzip: $(cat "$WORK/err")"
mongorestore --uri="$MONGODB_URI" --archive="$FILE" --gzip --drop --stopOnError \
    >"$WORK/out" 2>"$WORK/err" ||
    fail "mongorestore failed (collections restored before the error were replaced): $(tail -n 20 "$WORK/err")"
restore_finish

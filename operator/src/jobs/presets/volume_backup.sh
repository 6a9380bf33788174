# ---- volume backup: a tar.gz of the archived claim's whole content ----
need tar
need gzip
DATA="${APPRELEASE_VOLUME_ROOT:-/data}"
[ -d "$DATA" ] || fail "$DATA (the archived claim) is not mounted"
backup_begin
# Strict: a file that changes or vanishes while it is read fails the backup.
tar -C "$DATA" -czf "$TMP" . >"$WORK/out" 2>"$WORK/err" ||
    fail "tar of $DATA failed: $(tail -n 20 "$WORK/err")"
[ -s "$TMP" ] || fail "tar wrote nothing: the backup is empty"
tar -tzf "$TMP" >"$WORK/list" 2>"$WORK/err" || fail "the archive does not read back: $(cat "$WORK/err")"
[ -s "$WORK/list" ] || fail "the archive lists no entries"
backup_finish

# ---- volume restore: replace the claim's content with the archive's ----
# The archive is extracted into a staging directory on the claim first; only when that
# succeeded is the old content deleted and the staged content moved into place (renames on
# one filesystem). A full disk therefore fails before anything is deleted.
need tar
need gzip
need find
DATA="${APPRELEASE_VOLUME_ROOT:-/data}"
[ -d "$DATA" ] || fail "$DATA (the archived claim) is not mounted"
restore_begin
tar -tzf "$FILE" >"$WORK/list" 2>"$WORK/err" || fail "$FILE does not read as a tar.gz: $(cat "$WORK/err")"
if grep -e '^/' -e '^\.\./' -e '/\.\./' -e '^\.\.$' "$WORK/list" >"$WORK/odd"; then
    fail "$FILE has entries outside the claim: $(head -n 3 "$WORK/odd")"
fi
STAGE="$DATA/.apprelease-restore"
rm -rf "$STAGE"
mkdir "$STAGE" || fail "cannot create $STAGE"
CLEANUP_EXTRA='rm -rf "$STAGE"'
tar -C "$STAGE" -xzpf "$FILE" >"$WORK/out" 2>"$WORK/err" ||
    fail "extracting $FILE failed, the claim's content was not changed: $(tail -n 20 "$WORK/err")"
# From here on the staged copy is kept on failure: it may be the only complete one.
CLEANUP_EXTRA=''
find "$DATA" -mindepth 1 -maxdepth 1 ! -name .apprelease-restore -exec rm -rf -- {} + >"$WORK/out" 2>"$WORK/err" ||
    fail "deleting the old content of $DATA failed (the backup is complete in $STAGE): $(tail -n 5 "$WORK/err")"
find "$STAGE" -mindepth 1 -maxdepth 1 -exec mv -- {} "$DATA/" \; >"$WORK/out" 2>"$WORK/err" ||
    fail "moving the restored content into $DATA failed (the rest is in $STAGE): $(tail -n 5 "$WORK/err")"
rmdir "$STAGE" || fail "some restored entries could not be moved out of $STAGE into $DATA"
restore_finish

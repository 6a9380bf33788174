# ---- redis backup: an RDB snapshot of every database, fetched with redis-cli --rdb ----
need redis-cli
need_env REDIS_HOST "REDIS_HOST, REDIS_PORT, REDIS_USERNAME, REDISCLI_AUTH"
# The password (if any) is read by redis-cli from REDISCLI_AUTH, never put on a command line;
# REDIS_USERNAME (optional) names an ACL user.
set -- -h "$REDIS_HOST" -p "${REDIS_PORT:-6379}" --no-auth-warning
[ -z "${REDIS_USERNAME:-}" ] || set -- "$@" --user "$REDIS_USERNAME"
backup_begin
redis-cli "$@" --rdb "$TMP" \
    >"$WORK/out" 2>"$WORK/err" ||
    fail "redis-cli --rdb from $REDIS_HOST failed: $(cat "$WORK/out" "$WORK/err")"
[ -s "$TMP" ] || fail "redis-cli wrote nothing: the backup is empty"
grep -q 'Transfer finished with success' "$WORK/out" "$WORK/err" ||
    fail "redis-cli did not report a complete transfer: $(cat "$WORK/out" "$WORK/err")"
head -c 5 "$TMP" >"$WORK/magic" || fail "cannot read the snapshot"
[ "$(cat "$WORK/magic")" = REDIS ] || fail "the snapshot is not an RDB file"
if command -v redis-check-rdb >/dev/null 2>&1; then
    redis-check-rdb "$TMP" >"$WORK/check" 2>&1 || fail "redis-check-rdb rejects the snapshot: $(tail -n 5 "$WORK/check")"
fi
backup_finish

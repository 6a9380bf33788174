# ---- redis restore ----
# A running Redis cannot load an RDB file over the network, and the Job cannot reach the
# server's data directory. So the snapshot is loaded into a private redis-server inside the
# Job (no TCP port, a unix socket), the target server is emptied (FLUSHALL), and every key of
# every database is copied into it with MIGRATE ... COPY REPLACE, which keeps values and TTLs.
# Finally the key count of each database is compared; any difference fails the Job.
need redis-cli
need redis-server
need awk
need_env REDIS_HOST "REDIS_HOST, REDIS_PORT, REDIS_USERNAME, REDISCLI_AUTH"
restore_begin
head -c 5 "$FILE" >"$WORK/magic" || fail "cannot read $FILE"
[ "$(cat "$WORK/magic")" = REDIS ] || fail "$FILE is not an RDB file"
PORT="${REDIS_PORT:-6379}"
target() {
    if [ -n "${REDIS_USERNAME:-}" ]; then
        redis-cli -h "$REDIS_HOST" -p "$PORT" --no-auth-warning --user "$REDIS_USERNAME" "$@"
    else
        redis-cli -h "$REDIS_HOST" -p "$PORT" --no-auth-warning "$@"
    fi
}
# The private server gets no password from the environment.
private() { (unset REDISCLI_AUTH && redis-cli -s "$WORK/redis.sock" "$@"); }
ln -s "$FILE" "$WORK/dump.rdb" || fail "cannot link the snapshot"
redis-server --port 0 --unixsocket "$WORK/redis.sock" --unixsocketperm 700 --dir "$WORK" \
    --dbfilename dump.rdb --save '' --appendonly no --daemonize no \
    >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
CLEANUP_EXTRA='kill "$SERVER_PID" 2>/dev/null || true'
tries=0
until private ping >"$WORK/ping" 2>&1 && grep -q PONG "$WORK/ping"; do
    kill -0 "$SERVER_PID" 2>/dev/null || fail "the snapshot could not be loaded: $(tail -n 5 "$WORK/server.log")"
    tries=$((tries + 1))
    [ "$tries" -lt 600 ] || fail "the private redis-server did not start within 10 minutes"
    sleep 1
done
target ping >"$WORK/ping" 2>&1 || fail "cannot reach $REDIS_HOST:$PORT: $(cat "$WORK/ping")"
grep -q PONG "$WORK/ping" || fail "$REDIS_HOST:$PORT answered: $(cat "$WORK/ping")"
private info keyspace >"$WORK/keyspace" || fail "cannot read the snapshot's keyspace"
# db0:keys=1000,expires=0,avg_ttl=0 -> "0 1000"
awk -F '[:=,]' '/^db[0-9]+:/ { sub(/^db/, "", $1); print $1, $3 }' "$WORK/keyspace" >"$WORK/dbs" ||
    fail "cannot read the snapshot's keyspace"
# Everything checked: from here on the target changes.
target flushall >"$WORK/flush" 2>&1 || fail "FLUSHALL on $REDIS_HOST failed: $(cat "$WORK/flush")"
grep -q '^OK' "$WORK/flush" || fail "FLUSHALL on $REDIS_HOST answered: $(cat "$WORK/flush")"
# redis-cli reads commands from stdin, one per line; quote the arguments for it.
quote() { printf '%s' "$1" | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g'; }
if [ -n "${REDIS_USERNAME:-}" ]; then
    AUTH="AUTH2 \"$(quote "$REDIS_USERNAME")\" \"$(quote "${REDISCLI_AUTH:-}")\""
elif [ -n "${REDISCLI_AUTH:-}" ]; then
    AUTH="AUTH \"$(quote "$REDISCLI_AUTH")\""
else
    AUTH=""
fi
while read -r db count; do
    private -n "$db" --scan </dev/null >"$WORK/keys" 2>"$WORK/err" || fail "cannot list the keys of db $db: $(cat "$WORK/err")"
    sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' "$WORK/keys" >"$WORK/quoted" || fail "cannot quote the keys of db $db"
    PREFIX="MIGRATE \"$(quote "$REDIS_HOST")\" $PORT \"\" $db 60000 COPY REPLACE $AUTH KEYS \"" \
        awk '{ print ENVIRON["PREFIX"] $0 "\"" }' "$WORK/quoted" >"$WORK/migrate" ||
        fail "cannot prepare the copy of db $db"
    private -n "$db" <"$WORK/migrate" >"$WORK/replies" 2>"$WORK/err" ||
        fail "copying db $db to $REDIS_HOST failed: $(cat "$WORK/err")"
    if grep -v '^OK$' "$WORK/replies" >"$WORK/bad"; then
        fail "copying db $db to $REDIS_HOST failed: $(head -n 5 "$WORK/bad")"
    fi
    target -n "$db" dbsize </dev/null >"$WORK/size" 2>"$WORK/err" || fail "cannot count the keys of db $db: $(cat "$WORK/err")"
    [ "$(cat "$WORK/size")" = "$count" ] ||
        fail "db $db has $(cat "$WORK/size") keys after the restore, the snapshot has $count"
    echo "apprelease: db $db: $count keys restored"
done <"$WORK/dbs"
private shutdown nosave >/dev/null 2>&1 || true
restore_finish

# ---- apprelease preset: common part (POSIX sh) ----
# Stops at the first error. Tool output goes to files and every step's exit code is checked,
# because `pipefail` is not available in every sh.
set -eu
umask 077

fail() {
    echo "apprelease $PRESET $MODE failed: $*" >&2
    exit 1
}

# Names that end up in paths must be plain Kubernetes names: no '/', no '..'.
safe_name() {
    case "$2" in
        '' | .* | *[!a-z0-9.-]*) fail "$1 \"$2\" is not a plain Kubernetes name" ;;
    esac
}

need() {
    command -v "$1" >/dev/null 2>&1 || fail "$1 is not installed in this image; set the preset's image to one that has it"
}

need_env() {
    eval "need_env_value=\${$1:-}"
    [ -n "$need_env_value" ] || fail "$1 is not set; it is read from the preset's Secret ($2)"
}

ROOT="${APPRELEASE_BACKUP_ROOT:-/backups}"
REPORT="${APPRELEASE_TERMINATION_LOG:-/dev/termination-log}"
NS="${APPRELEASE_NAMESPACE:-}"
REL="${APPRELEASE_NAME:-}"
ID="${APPRELEASE_BACKUP_ID:-}"
CLAIM="${APPRELEASE_BACKUP_CLAIM:-}"
safe_name namespace "$NS"
safe_name release "$REL"
safe_name "backup id" "$ID"
safe_name "backup claim" "$CLAIM"
DIR="$ROOT/$NS/$REL"
NAME="$ID.$EXT"
FILE="$DIR/$NAME"
LOCATION="pvc://$CLAIM/$NS/$REL/$NAME"
need sha256sum

# Small scratch files (tool messages, listings) go to a private temporary directory, so that
# errors can be told even when the claim is full. Large ones (a decompressed dump) go to BIG,
# next to the backups. Both go away on every exit; the finished backup is never touched.
WORK=""
BIG=""
TMP="$DIR/.$NAME.partial"
cleanup() {
    [ -z "${CLEANUP_EXTRA:-}" ] || eval "$CLEANUP_EXTRA"
    [ "$MODE" != backup ] || rm -f "$TMP" "$TMP.sha256" "$TMP.raw"
    [ -z "$WORK" ] || rm -rf "$WORK"
    [ -z "$BIG" ] || rm -rf "$BIG"
}
trap cleanup EXIT
trap 'exit 1' HUP INT TERM

make_work() {
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/apprelease.XXXXXX") || fail "cannot create a temporary directory"
}

make_big() {
    BIG="$DIR/.$NAME.$MODE.work"
    rm -rf "$BIG"
    mkdir "$BIG" || fail "cannot create a scratch directory in $DIR"
}

# Before a backup: the release's directory exists and is writable, the id is unused.
backup_begin() {
    make_work
    mkdir -p "$DIR" 2>"$WORK/err" || fail "cannot create $DIR on claim $CLAIM: $(cat "$WORK/err")"
    [ ! -e "$FILE" ] || fail "$FILE already exists; a backup id is used once"
    # Leftovers of a Job killed at its deadline (a release runs one backup at a time).
    for stale in "$DIR"/.*.partial "$DIR"/.*.partial.* "$DIR"/.*.work; do
        [ ! -e "$stale" ] || rm -rf -- "$stale" || fail "cannot remove the leftover $stale"
    done
    (: >"$TMP") 2>"$WORK/err" || fail "cannot write to $DIR on claim $CLAIM: $(cat "$WORK/err")"
}

# After the tool wrote $TMP: non-empty, checksummed, moved into place atomically, older
# backups pruned, and the report written last.
backup_finish() {
    [ -s "$TMP" ] || fail "the backup is empty"
    wc -c <"$TMP" >"$WORK/size" || fail "cannot measure the backup"
    SIZE=$(tr -d ' \n' <"$WORK/size")
    case "$SIZE" in '' | *[!0-9]*) fail "cannot measure the backup ($SIZE)" ;; esac
    [ "$SIZE" -gt 0 ] || fail "the backup is empty"
    sha256sum "$TMP" >"$WORK/sum" || fail "cannot checksum the backup"
    SUM=$(cut -d ' ' -f 1 <"$WORK/sum")
    case "$SUM" in
        *[!0-9a-f]*) fail "sha256sum printed \"$SUM\"" ;;
    esac
    [ ${#SUM} -eq 64 ] || fail "sha256sum printed \"$SUM\""
    printf '%s  %s\n' "$SUM" "$NAME" >"$TMP.sha256" || fail "cannot write the checksum file"
    sync || fail "cannot flush the backup to disk"
    mv -f "$TMP.sha256" "$FILE.sha256" || fail "cannot move the checksum into place"
    mv "$TMP" "$FILE" || fail "cannot move the backup into place"
    sync || fail "cannot flush the backup to disk"
    prune
    printf '{"location":"%s","sizeBytes":%s,"sha256":"%s"}\n' "$LOCATION" "$SIZE" "$SUM" >"$REPORT" ||
        fail "cannot write the report to $REPORT"
    echo "apprelease: backup $LOCATION written, $SIZE bytes, sha256 $SUM"
}

# Deletes the backups the operator named in APPRELEASE_PRUNE_BACKUPS (comma-separated ids),
# only files of this release's directory, only after this backup succeeded. A file that
# cannot be deleted is reported but does not undo the successful backup.
prune() {
    [ -n "${APPRELEASE_PRUNE_BACKUPS:-}" ] || return 0
    printf '%s\n' "$APPRELEASE_PRUNE_BACKUPS" | tr ',' '\n' >"$WORK/prune" || fail "cannot read APPRELEASE_PRUNE_BACKUPS"
    while IFS= read -r old; do
        case "$old" in
            '') continue ;;
            .* | *[!a-z0-9.-]*)
                echo "apprelease: not pruning \"$old\": not a backup id" >&2
                continue
                ;;
        esac
        [ "$old" != "$ID" ] || continue
        for f in "$DIR/$old".*; do
            [ -f "$f" ] || continue
            if rm -f -- "$f"; then
                echo "apprelease: pruned $f"
            else
                echo "apprelease: could not prune $f" >&2
            fi
        done
    done <"$WORK/prune"
}

# Before a restore: the backup named by the operator exists and its checksum is right.
restore_begin() {
    if [ -n "${APPRELEASE_BACKUP_LOCATION:-}" ] && [ "$APPRELEASE_BACKUP_LOCATION" != "$LOCATION" ]; then
        fail "backup $ID was recorded at $APPRELEASE_BACKUP_LOCATION, but this Job reads $LOCATION; restore it by hand"
    fi
    [ -f "$FILE" ] || fail "backup file $FILE (backup $ID) does not exist"
    make_work
    EXPECTED="${APPRELEASE_BACKUP_SHA256:-}"
    if [ -z "$EXPECTED" ] && [ -f "$FILE.sha256" ]; then
        cut -d ' ' -f 1 <"$FILE.sha256" >"$WORK/expected" || fail "cannot read $FILE.sha256"
        EXPECTED=$(cat "$WORK/expected")
    fi
    [ -n "$EXPECTED" ] || fail "no checksum is known for $FILE, so it is not restored"
    sha256sum "$FILE" >"$WORK/sum" || fail "cannot checksum $FILE"
    ACTUAL=$(cut -d ' ' -f 1 <"$WORK/sum")
    [ "$ACTUAL" = "$EXPECTED" ] || fail "checksum of $FILE is $ACTUAL, expected $EXPECTED: the backup is damaged, nothing was restored"
    echo "apprelease: backup $FILE verified (sha256 $ACTUAL)"
    # A check before an on-demand restore: the backup is there and intact, nothing is touched.
    if [ "${APPRELEASE_RESTORE_CHECK:-}" = 1 ]; then
        printf '{"verified":"%s","sha256":"%s"}\n' "$LOCATION" "$ACTUAL" >"$REPORT" ||
            fail "cannot write the report to $REPORT"
        echo "apprelease: check only, nothing was restored"
        exit 0
    fi
}

# The database is restored at this point: a report that cannot be written is only a warning.
restore_finish() {
    printf '{"restored":"%s","sha256":"%s"}\n' "$LOCATION" "$ACTUAL" >"$REPORT" ||
        echo "apprelease: could not write the report to $REPORT" >&2
    echo "apprelease: restored $LOCATION"
}
# ---- end of common part ----

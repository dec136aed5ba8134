#!/usr/bin/env bash
# Install the hermes agent's dashboard (the peer `make bench` compares with,
# and the upstream the browser tests put behind nginx) into
# target/bench/hermes-venv: one install for both. Does nothing when it is
# already there.
#
#   hermes-venv.sh           best effort (`make bench`): on failure the reason
#                            stays in target/bench/hermes-install.log and the
#                            bench table says so in its row; exits 0.
#   hermes-venv.sh --strict  (`make deps-hermes`, for the tests): on failure
#                            prints the end of the log and exits 1.
set -u
STRICT=0
[ "${1:-}" = --strict ] && STRICT=1
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
DIR=${CARGO_TARGET_DIR:-$ROOT/target}/bench
VENV=$DIR/hermes-venv
LOG=$DIR/hermes-install.log
VERSION=0.19.0
mkdir -p "$DIR"
installed() {
    "$VENV/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('hermes-agent') != '$VERSION')" 2>/dev/null &&
        [ -x "$VENV/bin/hermes" ]
}
if installed; then
    echo "hermes-agent $VERSION already in $VENV"
    exit 0
fi
echo "installing hermes-agent==$VERSION into $VENV (log: $LOG; takes minutes, once)"
start=$(date +%s)
{
    python3 -m venv "$VENV" && "$VENV/bin/pip" install --quiet "hermes-agent==$VERSION"
    echo "rc=$?"
} > "$LOG" 2>&1
echo "$(tail -n 1 "$LOG") after $(($(date +%s) - start)) s"
if [ "$STRICT" = 1 ] && ! installed; then
    echo "hermes-agent==$VERSION could not be installed into $VENV; the end of $LOG:" >&2
    tail -n 20 "$LOG" >&2
    exit 1
fi
exit 0

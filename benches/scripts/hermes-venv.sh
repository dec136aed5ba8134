#!/usr/bin/env bash
# Install the hermes agent's dashboard (the peer `make bench` compares with)
# into target/bench/hermes-venv. Best effort: on failure the reason stays in
# target/bench/hermes-install.log and the bench table says so in its row.
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
DIR=${CARGO_TARGET_DIR:-$ROOT/target}/bench
VENV=$DIR/hermes-venv
LOG=$DIR/hermes-install.log
VERSION=0.19.0
mkdir -p "$DIR"
if "$VENV/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('hermes-agent') != '$VERSION')" 2>/dev/null; then
    echo "hermes-agent $VERSION already in $VENV"
    exit 0
fi
echo "installing hermes-agent==$VERSION into $VENV (log: $LOG)"
{
    python3 -m venv "$VENV" && "$VENV/bin/pip" install --quiet "hermes-agent==$VERSION"
    echo "rc=$?"
} > "$LOG" 2>&1
tail -n 1 "$LOG"
exit 0

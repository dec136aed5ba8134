#!/usr/bin/env bash
# Instruction counts per GET /api/status, bare vs gated, under callgrind.
#
# Runs the gate bench's server child (benches/load, DASHGATE_BENCH_ROLE=
# ab-server) under `valgrind --tool=callgrind`, warms each listener up, then
# drives N keep-alive requests (one curl) at each in turn, dumping the
# counters between them. Prints instructions per request for each; the dumps
# stay in $OUT for callgrind_annotate. Instruction counts do not depend on
# what else the machine is doing, which wall-clock figures do.
#
# Usage: [FRESH=1] [VARIANTS='bare secure'] benches/scripts/callgrind-gate.sh [N]
#        (after `cargo bench --bench load --no-run`)
set -euo pipefail
N=${1:-2000}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT=${OUT:-$ROOT/target/bench/callgrind}
BIN=$(ls -t "$ROOT"/target/release/deps/load-* | grep -v '\.d$' | head -1)
TOKEN=bench-token-0123456789abcdef0123456789abcdef
mkdir -p "$OUT"
rm -f "$OUT"/cg.* "$OUT"/ports
mkfifo "$OUT/stdin.$$"
DASHGATE_BENCH_ROLE=ab-server valgrind --tool=callgrind --callgrind-out-file="$OUT/cg.%p" \
    "$BIN" < "$OUT/stdin.$$" > "$OUT/ports" 2> "$OUT/valgrind.log" &
VG=$!
exec 3> "$OUT/stdin.$$"   # keeps the child's stdin open; closing it stops the child
rm -f "$OUT/stdin.$$"
trap 'exec 3>&-; wait $VG 2>/dev/null || true' EXIT
for _ in $(seq 1 240); do grep -q ports "$OUT/ports" 2>/dev/null && break; sleep 0.5; done
port() { sed -n "s/.*$1=\([0-9]*\).*/\1/p" "$OUT/ports"; }
drive() {
    local cfg="$OUT/curl.cfg"
    : > "$cfg"
    for i in $(seq 1 "$2"); do
        [ "$i" -gt 1 ] && printf 'next\n' >> "$cfg"
        printf 'url = "http://127.0.0.1:%s/api/status"\noutput = /dev/null\n' "$1" >> "$cfg"
        printf 'header = "Authorization: Bearer %s"\n' "$TOKEN" >> "$cfg"
        # FRESH=1: every request a new head, so the gate decides each one.
        [ -n "${FRESH:-}" ] && printf 'header = "X-Request-Id: %s"\n' "$i" >> "$cfg"
    done
    curl -s -K "$cfg"
}
for v in ${VARIANTS:-bare secure blocklist}; do drive "$(port $v)" 200; done
callgrind_control -z $VG > /dev/null 2>&1
for v in ${VARIANTS:-bare secure blocklist}; do
    drive "$(port $v)" "$N"
    callgrind_control -d "$v" $VG > /dev/null 2>&1
done
for f in "$OUT"/cg.*.*; do
    name=$(sed -n 's/^desc: Trigger: dump //p' "$f")
    total=$(sed -n 's/^summary: //p' "$f")
    echo "$name: $((total / N)) instructions per request ($f)"
done

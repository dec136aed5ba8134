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
. "$(dirname "$0")/ab-server.sh"
OUT=${OUT:-$ROOT/target/bench/callgrind}
rm -f "$OUT"/cg.*
start_ab_server "$OUT" 240 valgrind --tool=callgrind --callgrind-out-file="$OUT/cg.%p"
VG=$CHILD
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

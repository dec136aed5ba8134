# Sourced by callgrind-gate.sh and perf-gate.sh: the gate bench's server
# child (benches/load, DASHGATE_BENCH_ROLE=ab-server) started on its own,
# after `cargo bench --bench load --no-run`.
#
# Sets ROOT, BIN and TOKEN (the bench's startup token, as in
# benches/load/main.rs). `start_ab_server OUT TRIES [WRAPPER...]` starts the
# child (under WRAPPER, e.g. valgrind, if given) with its stdin on fd 3, so
# closing fd 3 (done on exit) stops it; waits up to TRIES half-seconds for
# its ports; sets CHILD to its pid. `port NAME` prints a listener's port.
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BIN=$(ls -t "$ROOT"/target/release/deps/load-* | grep -v '\.d$' | head -1)
TOKEN=bench-token-0123456789abcdef0123456789abcdef

start_ab_server() {
    local out=$1 tries=$2
    shift 2
    AB_OUT=$out
    mkdir -p "$out"
    rm -f "$out/ports"
    mkfifo "$out/stdin.$$"
    DASHGATE_BENCH_ROLE=ab-server "$@" "$BIN" < "$out/stdin.$$" > "$out/ports" 2> "$out/server.log" &
    CHILD=$!
    exec 3> "$out/stdin.$$"   # keeps the child's stdin open; closing it stops the child
    rm -f "$out/stdin.$$"
    trap 'exec 3>&-; wait $CHILD 2>/dev/null || true' EXIT
    for _ in $(seq 1 "$tries"); do grep -q ports "$out/ports" 2>/dev/null && break; sleep 0.5; done
}

port() { sed -n "s/.*$1=\([0-9]*\).*/\1/p" "$AB_OUT/ports"; }

#!/usr/bin/env bash
# Where the gate's server CPU goes, per request, bare vs secure, sampled by
# perf (cpu-clock: this VM has no hardware counters) while wrk drives each
# listener of the gate bench's server child in turn.
#
# Prints server CPU per request (kernel and user) for each, then the
# functions whose cost per request differs most. Needs `perf` and `wrk`
# (apt-get install linux-perf wrk); not part of `make bench`.
#
# Usage: benches/scripts/perf-gate.sh [TOP]   (after `cargo bench --bench load --no-run`)
set -euo pipefail
TOP=${1:-30}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT=${OUT:-$ROOT/target/bench/perf}
BIN=$(ls -t "$ROOT"/target/release/deps/load-* | grep -v '\.d$' | head -1)
TOKEN=bench-token-0123456789abcdef0123456789abcdef
SECS=6
mkdir -p "$OUT"
mkfifo "$OUT/stdin.$$"
DASHGATE_BENCH_ROLE=ab-server "$BIN" < "$OUT/stdin.$$" > "$OUT/ports" 2> /dev/null &
PID=$!
exec 3> "$OUT/stdin.$$"   # closing it stops the child
rm -f "$OUT/stdin.$$"
trap 'exec 3>&-; wait $PID 2>/dev/null || true' EXIT
for _ in $(seq 1 60); do grep -q ports "$OUT/ports" 2>/dev/null && break; sleep 0.5; done
port() { sed -n "s/.*$1=\([0-9]*\).*/\1/p" "$OUT/ports"; }
for v in bare secure; do
    wrk -t1 -c32 -d$((SECS + 3))s -H "Authorization: Bearer $TOKEN" \
        "http://127.0.0.1:$(port $v)/api/status" > "$OUT/wrk-$v.txt" 2>&1 &
    WRK=$!
    sleep 1
    perf record -q -F 2999 -e cpu-clock -p "$PID" -o "$OUT/$v.data" -- sleep "$SECS" > /dev/null 2>&1
    wait $WRK
    perf report -i "$OUT/$v.data" --no-children --sort sym -g none -n 2> /dev/null \
        | grep -v '^#' | grep -v '^$' > "$OUT/sym-$v.txt"
done
python3 - "$OUT" "$SECS" "$TOP" <<'PY'
import collections, re, sys
out, secs, top = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
ns_per_sample = 1e9 / 2999
def load(v):
    rps = float(open(f"{out}/wrk-{v}.txt").read().split("Requests/sec:")[1].split()[0])
    d = collections.Counter()
    for line in open(f"{out}/sym-{v}.txt"):
        m = re.match(r"\s*[\d.]+%\s+(\d+)\s+\[(.)\]\s+(.*)", line)
        if m:
            d[(m.group(2), m.group(3).strip())] += int(m.group(1))
    return rps, {k: n * ns_per_sample / (rps * secs) for k, n in d.items()}
runs = {v: load(v) for v in ("bare", "secure")}
for v, (rps, d) in runs.items():
    k = sum(x for (kind, _), x in d.items() if kind == "k")
    print(f"{v}: {rps:,.0f} req/s; server CPU {sum(d.values()):,.0f} ns/request (kernel {k:,.0f}, user {sum(d.values()) - k:,.0f})")
b, s = runs["bare"][1], runs["secure"][1]
diff = sorted(((s.get(k, 0) - b.get(k, 0), k) for k in set(b) | set(s)), reverse=True)
for d, (kind, name) in diff[:top]:
    print(f"{d:7.0f} ns  [{kind}] {name[:110]}")
PY

#!/usr/bin/env bash
# Where the gate's server CPU goes, per request, bare vs secure, sampled by
# perf (cpu-clock: this VM has no hardware counters) while wrk drives each
# listener of the gate bench's server child in turn.
#
# Prints server CPU per request (kernel and user) for each, then the
# functions whose cost per request differs most. Needs `perf` and `wrk`
# (apt-get install linux-perf wrk); not part of `make bench`.
#
# Usage: [FRESH=1] benches/scripts/perf-gate.sh [TOP]
#        (after `cargo bench --bench load --no-run`; FRESH=1: every request
#        a new head, `X-Request-Id: <n>`, as the bench's every-new-head row)
set -euo pipefail
TOP=${1:-30}
. "$(dirname "$0")/ab-server.sh"
OUT=${OUT:-$ROOT/target/bench/perf}
SECS=6
start_ab_server "$OUT" 60
PID=$CHILD
SCRIPT=()
if [ -n "${FRESH:-}" ]; then
    cat > "$OUT/fresh.lua" <<'LUA'
local n = 0
request = function()
  n = n + 1
  wrk.headers["X-Request-Id"] = tostring(n)
  return wrk.format()
end
LUA
    SCRIPT=(-s "$OUT/fresh.lua")
fi
for v in bare secure; do
    wrk -t1 -c32 -d$((SECS + 3))s -H "Authorization: Bearer $TOKEN" "${SCRIPT[@]}" \
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

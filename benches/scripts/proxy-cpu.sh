#!/usr/bin/env bash
# CPU per proxied GET, side by side: dashgate --upstream (secure + Bearer,
# and the lan preset), Debian's nginx as a plain reverse proxy, and the
# hyper floor (hyper-floor/: a proxy of hyper and tokio alone, on the
# work-stealing runtime and, CT=1, on one single-threaded runtime), all in
# front of the upstream bench's upstream (benches/load/upstream.rs).
#
# For each front, ROUNDS times in turn: wrk -t1 -c32 for SECS seconds at
# GET /page; user and system CPU of the front's processes from
# /proc/PID/stat over the run, divided by the requests wrk completed.
# Prints one line per front, medians of the rounds: µs of CPU per request
# (and its user and system parts), req/s, and wrk's p99 latency.
#
# Needs wrk and nginx (apt-get install wrk nginx), after
# `cargo bench --bench load --no-run` and `cargo build --release`; builds
# hyper-floor/ itself. Not part of `make bench`, which has the ratios.
#
# Two builds side by side: B=/path/to/other/dashgate adds the front
# dashgate-b (that binary, secure + Bearer as dashgate), and the median of
# the per-round ratios of total CPU per request (all threads,
# /proc/PID/task/*/schedstat, in ns: finer than the ticks of /proc/PID/stat)
# b ÷ dashgate. FRONTS="dashgate dashgate-b" runs only the fronts named.
#
# Usage: [B=BINARY] [FRONTS="..."] benches/scripts/proxy-cpu.sh [ROUNDS] [SECS]
set -euo pipefail
ROUNDS=${1:-3}
SECS=${2:-5}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=$(ls -t "$ROOT"/target/release/deps/load-* | grep -v '\.d$' | head -1)
TOKEN=bench-token-0123456789abcdef0123456789abcdef
OUT=${OUT:-$ROOT/target/bench/proxy-cpu}
rm -rf "$OUT"; mkdir -p "$OUT"
(cd "$ROOT/benches/scripts/hyper-floor" && CARGO_TARGET_DIR="$ROOT/target/hyper-floor" cargo build --release -q)
FLOOR=$ROOT/target/hyper-floor/release/hyper-floor
PIDS=()
cleanup() { exec 3>&- 2>/dev/null || true; kill "${PIDS[@]}" 2>/dev/null || true; [ -f "$OUT/nginx.pid" ] && kill "$(cat "$OUT/nginx.pid")" 2>/dev/null || true; }
trap cleanup EXIT
mkfifo "$OUT/up.stdin"
DASHGATE_BENCH_ROLE=upstream-server "$BIN" < "$OUT/up.stdin" > "$OUT/up.ports" 2> "$OUT/up.log" &
PIDS+=($!)
exec 3> "$OUT/up.stdin"
for _ in $(seq 60); do grep -q ports "$OUT/up.ports" 2>/dev/null && break; sleep 0.5; done
APP=$(sed -n 's/.*app=\([0-9]*\).*/\1/p' "$OUT/up.ports")
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
P_DG=$(free_port); P_LAN=$(free_port); P_NG=$(free_port); P_MT=$(free_port); P_CT=$(free_port)
RUST_LOG=warn DASHGATE_TOKEN=$TOKEN "$ROOT/target/release/dashgate" --port "$P_DG" --upstream "http://127.0.0.1:$APP" --state-dir "$OUT/st1" > "$OUT/dg.log" 2>&1 &
PIDS+=($!); D1=$!
RUST_LOG=warn "$ROOT/target/release/dashgate" --port "$P_LAN" --upstream "http://127.0.0.1:$APP" --policy "$ROOT/policies/lan.yaml" --state-dir "$OUT/st2" > "$OUT/lan.log" 2>&1 &
PIDS+=($!); D2=$!
if [ -n "${B:-}" ]; then
    P_B=$(free_port)
    RUST_LOG=warn DASHGATE_TOKEN=$TOKEN "$B" --port "$P_B" --upstream "http://127.0.0.1:$APP" --state-dir "$OUT/st3" > "$OUT/b.log" 2>&1 &
    PIDS+=($!); D3=$!
fi
"$FLOOR" "$P_MT" "127.0.0.1:$APP" & PIDS+=($!); F1=$!
CT=1 "$FLOOR" "$P_CT" "127.0.0.1:$APP" & PIDS+=($!); F2=$!
cat > "$OUT/nginx.conf" <<NGINX
worker_processes auto;
pid $OUT/nginx.pid;
error_log $OUT/nginx.err;
events { worker_connections 4096; }
http {
  access_log off;
  upstream app { server 127.0.0.1:$APP; keepalive 64; }
  map \$http_upgrade \$connection_upgrade { default upgrade; '' ''; }
  server {
    listen 127.0.0.1:$P_NG;
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Host \$host;
      proxy_set_header Upgrade \$http_upgrade;
      proxy_set_header Connection \$connection_upgrade;
      proxy_set_header X-Real-IP \$remote_addr;
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto \$scheme;
    }
  }
}
NGINX
nginx -c "$OUT/nginx.conf" -p "$OUT" -e "$OUT/nginx.err"
for p in $P_DG $P_LAN $P_NG $P_MT $P_CT ${P_B:-}; do
    for _ in $(seq 40); do curl -s -o /dev/null -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$p/page" && break; sleep 0.25; done
done
NGW=$(pgrep -P "$(cat "$OUT/nginx.pid")" | tr '\n' ' ')
# user and system ticks of the processes, summed
cpu() { local u=0 s=0; for p in "$@"; do read -r a b < <(awk '{print $14, $15}' "/proc/$p/stat"); u=$((u + a)); s=$((s + b)); done; echo "$u $s"; }
# CPU time of the processes' threads in ns (mawk's %d stops at 2^31)
ns() { cat $(for p in "$@"; do echo /proc/$p/task/*/schedstat; done) | awk '{t+=$1} END{printf "%.0f\n", t}'; }
run() { # name port pids...
    local name=$1 port=$2; shift 2
    local u0 s0 u1 s1 t0 t1; read -r u0 s0 < <(cpu "$@"); t0=$(ns "$@")
    wrk -t1 -c32 -d"${SECS}s" --latency -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$port/page" > "$OUT/wrk.$name" 2>&1
    read -r u1 s1 < <(cpu "$@"); t1=$(ns "$@")
    local n; n=$(awk '/requests in/{print $1}' "$OUT/wrk.$name")
    local tck; tck=$(getconf CLK_TCK)
    local p99; p99=$(awk '$1=="99%"{v=$2; if (v ~ /us$/) {sub(/us$/,"",v); v=v/1000} else if (v ~ /ms$/) {sub(/ms$/,"",v)} else if (v ~ /s$/) {sub(/s$/,"",v); v=v*1000}; print v}' "$OUT/wrk.$name")
    echo "$name $(awk -v u=$((u1 - u0)) -v y=$((s1 - s0)) -v n="$n" -v t="$tck" -v s="$SECS" 'BEGIN{printf "%.2f %.0f %.2f %.2f", (u+y)*1e6/t/n, n/s, u*1e6/t/n, y*1e6/t/n}') $p99 $(awk -v t=$((t1 - t0)) -v n="$n" 'BEGIN{printf "%.3f", t/1000/n}')" >> "$OUT/rows"
}
ALL="dashgate dashgate-lan nginx hyper-floor hyper-floor-CT${B:+ dashgate-b}"
FRONTS=${FRONTS:-$ALL}
front() { # one round of the front named $1
    case $1 in
        dashgate) run dashgate "$P_DG" "$D1" ;;
        dashgate-lan) run dashgate-lan "$P_LAN" "$D2" ;;
        nginx) run nginx "$P_NG" $NGW ;;
        hyper-floor) run hyper-floor "$P_MT" "$F1" ;;
        hyper-floor-CT) run hyper-floor-CT "$P_CT" "$F2" ;;
        dashgate-b) run dashgate-b "$P_B" "$D3" ;;
    esac
}
for r in $(seq 1 "$ROUNDS"); do
    # every other round in reverse order: no front always runs first
    order=$FRONTS
    [ $((r % 2)) = 0 ] && order=$(echo $FRONTS | tr ' ' '\n' | tac | tr '\n' ' ')
    for f in $order; do front "$f"; done
done
med() { sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
printf '%-16s %12s %8s %8s %10s %10s %12s\n' front 'µs CPU/req' 'user' 'sys' 'req/s' 'p99 ms' 'µs schedstat'
for f in $FRONTS; do
    col() { awk -v f=$f -v c="$1" '$1==f{print $c}' "$OUT/rows" | med; }
    printf '%-16s %12.2f %8.2f %8.2f %10.0f %10.2f %12.2f\n' "$f" "$(col 2)" "$(col 4)" "$(col 5)" "$(col 3)" "$(col 6)" "$(col 7)"
done
if [ -n "${B:-}" ]; then
    paste <(awk '$1=="dashgate"{print $7}' "$OUT/rows") <(awk '$1=="dashgate-b"{print $7}' "$OUT/rows") |
        awk '{printf "%.4f\n", $2 / $1}' | sort -n | tr '\n' ' ' |
        awk '{printf "CPU per request, dashgate-b ÷ dashgate, per round: %s(median %s)\n", $0, $(int((NF + 1) / 2))}'
fi

#!/usr/bin/env bash
# `make release`: dashgate's profile-guided release build, the one to deploy
# (docs/benchmarks.md, "Eleventh pass"; README, "The release build").
#
#   1. dashgate built with -Cprofile-generate, every crate (hyper, tokio and
#      warp are most of a request), in its own target dir;
#   2. that build serves the training workload (`load train`,
#      benches/load/train.rs: own routes, refusals, event and chat sockets,
#      proxied pages and the WebSocket relay), and writes its counts when it
#      exits;
#   3. the counts merged with the toolchain's own llvm-profdata (its LLVM is
#      rustc's; rustup's llvm-tools component, added if missing);
#   4. dashgate built again with -Cprofile-use, in a second target dir.
#
# Prints the binary's path last; it is $TARGET/pgo/dashgate. Nothing is left
# there when a step fails, so a stale build is never taken for a new one.
# About 10 minutes from nothing on two cores, 4-5 when the crates are built.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
OUT=$TARGET/pgo
CARGO=${CARGO:-cargo}
rm -f "$OUT/dashgate" "$OUT/dashgate.profdata"
rm -rf "$OUT/raw"
mkdir -p "$OUT/raw"

profdata() {
  local bin
  bin="$(rustc --print sysroot)/lib/rustlib/$(rustc -vV | sed -n 's/^host: //p')/bin/llvm-profdata"
  if [ ! -x "$bin" ]; then
    echo "pgo: adding rustup's llvm-tools component (llvm-profdata of rustc's LLVM)" >&2
    rustup component add llvm-tools >&2 || true
  fi
  [ -x "$bin" ] || { echo "pgo: no llvm-profdata at $bin" >&2; return 1; }
  echo "$bin"
}
PROFDATA=$(profdata)

echo "pgo: 1/4 the instrumented build ($OUT/gen)"
RUSTFLAGS="${RUSTFLAGS:-} -Cprofile-generate=$OUT/raw" \
  $CARGO build --release --bin dashgate --target-dir "$OUT/gen"

echo "pgo: 2/4 the training run (load train)"
LOAD=$(cd "$ROOT" && $CARGO bench --bench load --no-run --message-format=json 2>/dev/null \
  | sed -n 's/.*"executable":"\([^"]*\/load-[^"]*\)".*/\1/p' | tail -1)
[ -x "$LOAD" ] || { echo "pgo: the load bench did not build" >&2; exit 1; }
(cd "$ROOT" && LLVM_PROFILE_FILE="$OUT/raw/dashgate-%p-%m.profraw" \
  DASHGATE_BENCH_BIN="$OUT/gen/release/dashgate" "$LOAD" train)
ls "$OUT"/raw/*.profraw > /dev/null 2>&1 || { echo "pgo: the training run wrote no profile" >&2; exit 1; }

echo "pgo: 3/4 merging $(ls "$OUT"/raw/*.profraw | wc -l) profiles"
"$PROFDATA" merge -o "$OUT/dashgate.profdata" "$OUT"/raw/*.profraw

echo "pgo: 4/4 the optimised build ($OUT/use)"
RUSTFLAGS="${RUSTFLAGS:-} -Cprofile-use=$OUT/dashgate.profdata" \
  $CARGO build --release --bin dashgate --target-dir "$OUT/use"
cp "$OUT/use/release/dashgate" "$OUT/dashgate"
echo "$OUT/dashgate"

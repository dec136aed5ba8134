# dashgate: two set-up commands on a fresh machine, `make run` and `make test`.
# Everything they need beyond the Rust toolchain and Node.js is installed here.

CARGO ?= cargo
NPM ?= npm
NODE ?= node
# The browser the UI tests drive (Debian's package; `make deps-browser`).
CHROMIUM ?= /usr/bin/chromium
# The reverse proxy the upstream tests compare with (`make deps-nginx`).
NGINX ?= /usr/sbin/nginx
SHELL := /bin/bash

.PHONY: all build release run test lint unit browser bench bench-hermes bench-llng bench-floor fuzz deps-web deps-browser deps-hermes deps-nginx clean

all: build

build: deps-web
	$(CARGO) build --release

## The release build to deploy: profile-guided (benches/scripts/pgo.sh:
## built instrumented, trained on `load train`, built again with the counts),
## about 10 minutes from nothing; it is target/pgo/dashgate. It spends about a
## tenth less CPU per request than `build`'s (docs/benchmarks.md).
release: deps-web
	CARGO=$(CARGO) bash benches/scripts/pgo.sh

## Start the server on its embedded default (secure preset, 127.0.0.1:9119).
run: build
	./target/release/dashgate serve

## Lint, then every test (Rust unit + integration, then the browser tests).
test: lint unit browser

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings
	@for f in $$(find static/assets tests/browser -name '*.js' -o -name '*.mjs'); do \
	  $(NODE) --check $$f || exit 1; \
	done

unit: deps-web
	$(CARGO) test --lib --bins --tests

## The web UI in a real browser: the dashgate binary (debug build) and
## Debian's chromium driven by playwright-core, one node test file per
## scenario, screenshots in target/screenshots/. The binary is the one the
## integration tests use (`cargo test --no-run`: nothing to do after `unit`;
## `cargo build` would link a second variant with other dependency features).
## The hermes dashboard behind nginx (nginx-hermes.test.mjs) needs both
## installed: the first run installs hermes (a few minutes), later ones reuse it.
## hermes behind dashgate (upstream-hermes.test.mjs) also needs root: its
## client outside the LAN runs in a network namespace the test creates.
browser: deps-web deps-browser deps-hermes deps-nginx
	$(CARGO) test --no-run --test routes
	DASHGATE_BIN=$(CURDIR)/target/debug/dashgate CHROMIUM=$(CHROMIUM) NGINX=$(NGINX) \
	  HERMES_VENV=$(HERMES_VENV) \
	  $(NODE) --test --test-reporter=spec --test-concurrency=1 tests/browser/

## Benchmarks (docs/benchmarks.md): criterion for the policy engine, the chat
## bench, then the load bench, which prints the one table (figure, value, bar,
## pass/fail) and writes it to target/bench/results.json. About 20 minutes
## from nothing, with `make release` (its build is the one the load bench's
## servers run; the plain release build runs beside it in the upstream rows).
## A chat bench that fails leaves its rows "not measured", and a release
## build that fails leaves the load bench on the plain build (its table says
## which), rather than stopping the rest.
PGO_BIN := $(or $(CARGO_TARGET_DIR),$(CURDIR)/target)/pgo/dashgate
bench: bench-hermes bench-llng bench-floor deps-web
	$(CARGO) bench --bench decide -- --warm-up-time 1 --measurement-time 3
	@rm -f "$${CARGO_TARGET_DIR:-target}/bench/chat.json"
	-$(CARGO) bench --bench chat
	-CARGO=$(CARGO) bash benches/scripts/pgo.sh
	DASHGATE_BENCH_BIN=$$([ -x $(PGO_BIN) ] && echo $(PGO_BIN)) $(CARGO) bench --bench load

## Fuzzing (docs/fuzzing.md): each cargo-fuzz target in fuzz/ for
## FUZZ_SECONDS, one job at a time. Needs a nightly toolchain and
## `cargo install cargo-fuzz`, so it is not part of `make test` (which
## replays the kept inputs in fuzz/corpus/regressions/ on stable). New
## corpus inputs go to the git-ignored fuzz/corpus/TARGET/, crashes to
## fuzz/artifacts/TARGET/.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= policy_load gate_read client_ip chat_control

# One process per target, fuzzing in-process on one core (libFuzzer's
# -jobs/-workers would fork and send its output to fuzz-N.log instead).
# The policy loader also starts from the shipped and the test policies.
fuzz:
	@for t in $(FUZZ_TARGETS); do \
	  mkdir -p fuzz/corpus/$$t; \
	  seeds=""; [ $$t = policy_load ] && seeds="../policies ../tests/policies"; \
	  echo "== fuzz $$t for $(FUZZ_SECONDS)s"; \
	  (cd fuzz && $(CARGO) +nightly fuzz run $$t corpus/$$t corpus/regressions/$$t $$seeds \
	    -- -max_total_time=$(FUZZ_SECONDS) -timeout=10 -print_final_stats=1) || exit 1; \
	done

## The hermes agent's dashboard for the comparison rows, in a virtualenv under
## target/bench (best effort: a failed install is reported in the table).
bench-hermes:
	@bash benches/scripts/hermes-venv.sh

## Debian's LemonLDAP::NG and nginx, the auth service behind nginx's
## auth_request that the upstream rows compare with (best effort, as above).
bench-llng:
	@bash benches/scripts/llng.sh --install

## benches/scripts/hyper-floor (its own crate and lockfile): a proxy of hyper
## and tokio alone, an info front of the upstream rows (best effort).
bench-floor:
	-cd benches/scripts/hyper-floor && CARGO_TARGET_DIR=$(or $(CARGO_TARGET_DIR),$(CURDIR)/target)/hyper-floor $(CARGO) build --release -q

## The same install for the tests, which need it: a failed install stops here
## with the end of its log (target/bench/hermes-install.log), and a test that
## finds no hermes fails with the reason; neither skips.
HERMES_VENV := $(or $(CARGO_TARGET_DIR),$(CURDIR)/target)/bench/hermes-venv
deps-hermes:
	@bash benches/scripts/hermes-venv.sh --strict

## xterm.js and its fit addon, from npm (package-lock.json), into the
## git-ignored static/vendor/ served at /vendor/. Does nothing when up to date.
VENDOR := static/vendor
VENDOR_FILES := \
	$(VENDOR)/xterm/lib/xterm.mjs $(VENDOR)/xterm/css/xterm.css $(VENDOR)/xterm/LICENSE \
	$(VENDOR)/addon-fit/lib/addon-fit.mjs $(VENDOR)/addon-fit/LICENSE

deps-web: $(VENDOR_FILES)

node_modules/.package-lock.json: package.json package-lock.json
	$(NPM) ci --no-audit --no-fund
	@touch $@

$(VENDOR)/xterm/%: node_modules/.package-lock.json
	@mkdir -p $(@D)
	cp node_modules/@xterm/xterm/$* $@

$(VENDOR)/addon-fit/%: node_modules/.package-lock.json
	@mkdir -p $(@D)
	cp node_modules/@xterm/addon-fit/$* $@

## Debian's chromium for the browser tests, when it is not there yet (CI
## starts from a machine with only Rust and Node).
deps-browser:
	@if [ -x "$(CHROMIUM)" ]; then \
	  echo "chromium: $(CHROMIUM)"; \
	else \
	  sudo=""; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	  $$sudo apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -q chromium; \
	fi

## Debian's nginx (the plain reverse proxy hermes users put in front of it),
## when it is not there yet. bookworm's `nginx` is the package (`nginx-light`
## is only a transitional name there); older releases have only the latter.
## Nothing is started: the tests run their own nginx with their own config.
deps-nginx:
	@if [ -x "$(NGINX)" ]; then \
	  echo "nginx: $(NGINX)"; \
	else \
	  sudo=""; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	  $$sudo apt-get update -q && \
	  if apt-cache policy nginx | grep -q 'Candidate: [0-9]'; then pkg=nginx; else pkg=nginx-light; fi && \
	  DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -q $$pkg; \
	fi

clean:
	$(CARGO) clean

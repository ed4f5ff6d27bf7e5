# Fenix: `make demo` builds everything and starts the chat demo on http://127.0.0.1:4000;
# `make test` runs the whole suite. Each installs what a fresh Debian machine with Rust lacks.

SHELL := /bin/bash
PHOENIX_JS := node_modules/phoenix/priv/static/phoenix.js
# The virtualenv of the Python test clients (test/python/requirements.txt).
VENV := .venv
DEMO_PORT ?= 4000

.PHONY: all deps system-deps npm-deps python-deps test test-rust test-elixir test-js test-python test-bench bench fuzz fuzz-cmin demo clean

all: test

deps: system-deps npm-deps python-deps

# apt packages, installed only when a command is missing.
system-deps:
	@missing=""; \
	command -v elixir >/dev/null || missing="$$missing elixir erlang-dev erlang-nox"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v npm >/dev/null || missing="$$missing nodejs npm"; \
	python3 -c 'import ensurepip' 2>/dev/null || missing="$$missing python3-venv"; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  sudo=""; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	  $$sudo apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends $$missing; \
	fi

npm-deps: node_modules/.package-lock.json

node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund

python-deps: $(VENV)/.installed

# The venv is made only if missing; the pinned packages come from PyPI.
$(VENV)/.installed: test/python/requirements.txt
	[ -x $(VENV)/bin/python ] || python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r test/python/requirements.txt
	touch $@

test: deps test-rust test-elixir test-js test-python test-bench

test-rust:
	cargo test --workspace
	cargo test -p fenix_core --features fault-injection --test faults

test-elixir:
	MIX_ENV=test mix test

test-js: npm-deps
	MIX_ENV=test mix compile
	cd examples/chat && mix compile
	cp $(PHOENIX_JS) examples/chat/priv/static/phoenix.js
	node --test --test-concurrency=1 test/js/*.test.mjs

# Python clients from PyPI (phxsocket) against the conformance app.
test-python: python-deps
	MIX_ENV=test mix compile
	$(VENV)/bin/python -m unittest discover -s test/python -p '*_test.py' -v

# The benchmark tools at tiny sizes, against both servers: they must keep working.
test-bench:
	cargo build --release -p fenix-loadgen -p fenix-limit
	MIX_ENV=test mix compile
	python3 bench/smoke.py

# The standard benchmark set (minutes): writes bench/results/<date>.md and .svg.
bench: system-deps
	cargo build --release -p fenix-loadgen -p fenix-limit
	MIX_ENV=test mix compile
	python3 bench/run.py

# Coverage-guided fuzzing of the engine's parsers (nightly, cargo fuzz; not part of `make test`):
# each target for FUZZ_SECONDS, one after the other. New inputs go to a working corpus in
# fuzz/target/corpus/; the committed inputs (seeds/, corpus/, regressions/) are only read,
# and `cargo test` replays them on stable. A crash stops the run, its input left in fuzz/artifacts/.
FUZZ_SECONDS ?= 60
FUZZ_DIR := native/fenix_core/fuzz
FUZZ_TARGETS := frame_reader v1_json v2_json v2_binary http_head

fuzz:
	command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz
	cd $(FUZZ_DIR) && for target in $(FUZZ_TARGETS); do \
	  mkdir -p target/corpus/$$target && \
	  cargo +nightly fuzz run $$target target/corpus/$$target seeds/$$target corpus/$$target \
	    $$(ls -d regressions/$$target 2>/dev/null) \
	    -- -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 || exit 1; \
	done

# Folds the working corpus into the committed one, minimized (`cargo fuzz cmin`) to the
# fewest inputs that reach every edge (set cover, hit counts ignored): a few hundred files.
fuzz-cmin:
	cd $(FUZZ_DIR) && for target in $(FUZZ_TARGETS); do \
	  cp target/corpus/$$target/* corpus/$$target/ 2>/dev/null; \
	  cargo +nightly fuzz cmin $$target -- -set_cover_merge=1 -use_counters=0 || exit 1; \
	done

demo: deps
	cp $(PHOENIX_JS) examples/chat/priv/static/phoenix.js
	cd examples/chat && PORT=$(DEMO_PORT) mix run --no-halt

clean:
	cargo clean
	rm -rf _build priv/native examples/chat/_build examples/chat/deps node_modules $(VENV)

# pyro-mcp build, test and demo entry points. `make demo` and `make test` work on a fresh
# Debian 12 machine as root: they install what is missing first (see scripts/setup.sh).

CARGO ?= cargo
TARGET := x86_64-unknown-linux-gnu
GUEST := target/$(TARGET)/release/pyro-guest
PYRO := target/release/pyro
PREFIX ?= $(HOME)/.local
# One set of flags for every host cargo call (build, clippy, test, bench), so they share one
# set of compiled artifacts: the same profile and the same package selection, hence the same
# feature resolution (the dev-dependencies add no feature the build lacks: see
# crates/pyro-cli/Cargo.toml). `-p pyro-cli` in one place and `--workspace` in another would
# resolve features differently and compile the shared crates twice.
CARGO_FLAGS := --release --locked --workspace
# Test runs keep no warm spare VMs (each test's VMs end with it); tests/spares.rs turns
# them on for itself. `make demo` and `make bench` keep the product's default.
TEST_ENV := PYRO_SPARES=off
# How the integration tests find what `make build` made.
TEST_BINS := PYRO_BIN=$(CURDIR)/$(PYRO) PYRO_GUEST_BIN=$(CURDIR)/$(GUEST)
# Tests skipped here for a missing prerequisite (`common::skip`; under CI they fail instead).
SKIP_LOG := $(CURDIR)/target/test-skips.log
# Whether CI is set (as .ci/run sets it): no silent skip and no optional install there.
UNDER_CI = case "$${CI:-}" in ""|0|false) false ;; *) true ;; esac
# The npm packages the tests drive, pinned.
HOST_CLIS := @anthropic-ai/claude-code@2.1.332 @openai/codex@0.171.0
MCP_SDK := @modelcontextprotocol/sdk@1.32.2

.PHONY: mcp-client mcp-py node-tree py py-venv py-types test-py setup packages build guest environment test test-security test-crash check fmt lint demo bench install clean smoke-user smoke-use-cases host-clis dist dist-check

## Host packages (root or sudo), the build, the guest kernel and the default environment.
setup: packages build environment

packages:
	bash scripts/setup.sh

# The guest agent is PID 1 in every VM: a static binary, so it runs in any rootfs.
guest:
	RUSTFLAGS="-C target-feature=+crt-static" $(CARGO) build --release --locked -p pyro-guest --target $(TARGET)

build: guest
	$(CARGO) build $(CARGO_FLAGS)
	cp $(GUEST) target/release/pyro-guest

# Fetches and verifies the Debian kernel, builds the initramfs and debian:12.
environment: build
	$(PYRO) env pull debian:12

fmt:
	$(CARGO) fmt --all

lint:
	$(CARGO) fmt --all -- --check
	python3 scripts/layers.py
	python3 scripts/same-features.py
	$(CARGO) clippy $(CARGO_FLAGS) --all-targets -- -D warnings

## Lint, then the whole test suite against real VMs (TCG where KVM is unusable), then (as
## root) the smoke as a fresh unprivileged user. pyro-cli's integration tests are one binary
## (crates/pyro-cli/tests/main.rs; run one module with `-- MODULE::`). A test whose
## prerequisite is missing fails under CI and is skipped elsewhere, and the line after the run
## lists the skipped tests by name. `--tests` runs every unit and integration test without
## linking the examples again (clippy checks them); then `templates::`, which damages the
## shared template, runs alone; the doc examples compile in a run of their own.
test: setup lint host-clis mcp-client mcp-py py py-venv node-tree
	@rm -f $(SKIP_LOG)
	@export $(TEST_ENV) PYRO_SKIP_LOG=$(SKIP_LOG) $(TEST_BINS); $(CARGO) test $(CARGO_FLAGS) --tests \
	  && $(CARGO) test $(CARGO_FLAGS) --test main -- --ignored templates:: \
	  && $(CARGO) test $(CARGO_FLAGS) --doc; rc=$$?; \
	  if [ -s $(SKIP_LOG) ]; then \
	    echo "skipped: $$(cut -d' ' -f2 $(SKIP_LOG) | sed 's/:$$//' | sort -u | paste -sd' ' -)"; sed 's/^/  /' $(SKIP_LOG); \
	  else echo "skipped: none"; fi; exit $$rc
	$(MAKE) --no-print-directory test-py
	$(MAKE) --no-print-directory smoke-user

## The attack suite (docs/security.md): hostile inputs against a real VM; lists each attack
## with the boundary it attacks and prints `security: N tried, N held` (N asserted). An
## ignored test in the one binary (`security::`), so `make test` does not run it twice (CI
## runs it after `make test`).
test-security: build mcp-py
	$(TEST_ENV) $(TEST_BINS) $(CARGO) test $(CARGO_FLAGS) --test main -- --ignored security:: --test-threads=1 --nocapture

## The kill -9 campaign (tests/crash.rs, the ignored test `crash::`): at least 100 kills of
## `pyro` at random instants of create, exec, sync push, patch apply, export, reset and
## delete, each followed by status, list and an orphan check. Prints
## `crash: K kills, I inconsistent states, O orphans`.
test-crash: build
	$(TEST_ENV) $(TEST_BINS) $(CARGO) test $(CARGO_FLAGS) --test main -- --ignored crash:: --nocapture

## The five recipes of docs/use-cases/, end to end on real guests, through `pyro mcp serve` and
## the official TypeScript MCP SDK client (tests/use-cases/smoke.mjs), on the project in
## tests/use-cases/recipe-project. Builds debian:12-build once. Prints
## `use-case NAME: pass|FAIL SECONDS s` per recipe and `N passed, M failed: smoke-use-cases`.
smoke-use-cases: build mcp-client
	$(TEST_ENV) PYRO_BIN=$(CURDIR)/$(PYRO) bash scripts/smoke-use-cases.sh

# Claude Code's and Codex's real CLIs (pinned, from npm) for tests/host.rs, and the official
# TypeScript MCP SDK, the host-side client of tests/mcp_host_fit.rs. When npm is missing or
# the install fails, the tests that need them skip (and say so); under CI the target fails.
host-clis:
	@$(call npm_install,host-clis,$(HOST_CLIS))

mcp-client:
	@$(call npm_install,mcp-client,$(MCP_SDK))

## The official Python MCP SDK, two releases, for the HTTP tests (tests/mcp_http.rs): mcp
## 1.23.0 speaks 2025-06-18, mcp 2.3.0 speaks 2026-07-28 (and 2025-11-25 in legacy mode).
## One venv each under target/mcp-py, every package pinned (tests/clients/requirements-*).
## The Python package as the wheel lays it out (python/pyro_mcp's files and the module `make
## build` compiled), in target/py, for the tests and examples.
py: build
	@rm -rf target/py && mkdir -p target/py/pyro_mcp
	@cp python/pyro_mcp/*.py python/pyro_mcp/*.pyi python/pyro_mcp/py.typed target/py/pyro_mcp/
	@cp target/release/libpyro_py.so target/py/pyro_mcp/_native.abi3.so
	@# The distribution's metadata, so Inspect finds the `pyro` sandbox by its entry point.
	@v=$$(sed -n 's/^version = "\(.*\)"$$/\1/p' Cargo.toml | head -1); d=target/py/pyro_mcp-$$v.dist-info; mkdir -p $$d; \
	  printf 'Metadata-Version: 2.1\nName: pyro-mcp\nVersion: %s\n' $$v > $$d/METADATA; \
	  printf '[inspect_ai]\npyro_mcp = pyro_mcp.inspect\n' > $$d/entry_points.txt

## The Python test tools (pytest, mypy), pinned in python/tests/requirements.txt.
py-venv:
	@d=target/py-venv; if ! cmp -s python/tests/requirements.txt $$d/requirements.txt; then \
	  rm -rf $$d && python3 -m venv $$d && $$d/bin/pip install -q --disable-pip-version-check \
	    -r python/tests/requirements.txt && cp python/tests/requirements.txt $$d/; fi

## Regenerate python/pyro_mcp/types.py from the Rust result types' schemas.
py-types: build
	python3 scripts/py-types.py

## The Python SDK's pytest suite against real VMs (python/tests; part of `make test`).
test-py: py py-venv
	$(TEST_ENV) $(TEST_BINS) PYTHONPATH=$(CURDIR)/target/py target/py-venv/bin/python -m pytest -q -p no:cacheprovider python/tests

mcp-py:
	@for v in 1.23.0 2.3.0; do d=target/mcp-py/mcp-$$v; \
	  [ -x $$d/bin/python ] && $$d/bin/python -c 'import mcp' 2>/dev/null && continue; \
	  rm -rf $$d; mkdir -p target/mcp-py; \
	  if python3 -m venv $$d && $$d/bin/pip install -q --disable-pip-version-check \
	       -r crates/pyro-cli/tests/clients/requirements-mcp-$$v.txt >target/mcp-py/pip-$$v.log 2>&1; then :; \
	  elif $(UNDER_CI); then echo "mcp-py: pip install mcp==$$v failed: $$(tail -3 target/mcp-py/pip-$$v.log)" >&2; exit 1; \
	  else echo "mcp-py: pip install mcp==$$v failed; the tests that need it will be skipped"; fi; done

## A real node_modules (about 10,600 files, 105 MB; express, webpack, eslint, typescript and
## more, every version pinned by the lock file) for the diff tests (tests/tracking.rs):
## `npm ci` into target/node-tree, again only when the lock file changed.
NODE_TREE := crates/pyro-cli/tests/fixtures/node-tree
node-tree:
	@if cmp -s $(NODE_TREE)/package-lock.json target/node-tree/package-lock.json \
	    && [ -d target/node-tree/node_modules ]; then exit 0; fi; \
	rm -rf target/node-tree && mkdir -p target/node-tree && cp $(NODE_TREE)/package*.json target/node-tree/ && \
	cd target/node-tree && if npm ci --no-audit --no-fund >npm-install.log 2>&1; then exit 0; fi; \
	rm -rf node_modules; why="npm ci failed: $$(tail -3 npm-install.log | tr '\n' ' ')"; \
	if $(UNDER_CI); then echo "node-tree: $$why" >&2; exit 1; fi; \
	echo "node-tree: $$why; the tests that need it will be skipped"

# npm_install DIR,PACKAGES: into target/DIR, quietly; its log in target/DIR/npm-install.log.
define npm_install
mkdir -p target/$(1) && cd target/$(1) && \
if ! command -v npm >/dev/null; then why="npm not found"; \
elif npm install --no-audit --no-fund $(2) >npm-install.log 2>&1; then exit 0; \
else why="npm install $(2) failed: $$(tail -3 npm-install.log | tr '\n' ' ')"; fi; \
if $(UNDER_CI); then echo "$(1): $$why" >&2; exit 1; fi; \
echo "$(1): $$why; the tests that need it will be skipped"
endef

# Needs root to create the test users; skipped otherwise (a failure under CI).
smoke-user: build
	@if [ "$$(id -u)" = 0 ]; then bash scripts/smoke-user.sh; \
	elif $(UNDER_CI); then echo "smoke-user: needs root to create test users, and CI allows no skips" >&2; exit 1; \
	else echo "smoke-user: skipped (needs root to create test users)"; fi

check: test

demo: setup
	$(PYRO) demo

## Medians for boot, run and exec round trip (see docs/benchmarks.md).
bench: setup py py-venv
	@case "$${PYRO_BENCH_ONLY:-}" in python|pull) ;; *) $(TEST_BINS) target/release/pyro-bench;; esac
	@# The Python SDK's figures (python/bench/bench_py.py): all runs, or PYRO_BENCH_ONLY=python.
	@case "$${PYRO_BENCH_ONLY:-python}" in python) $(TEST_BINS) PYTHONPATH=$(CURDIR)/target/py \
	  target/py-venv/bin/python python/bench/bench_py.py;; esac
	@# A cold env pull as a fresh unprivileged user (root only: it creates the user).
	@case "$${PYRO_BENCH_ONLY:-pull}" in pull) bash scripts/bench-pull-user.sh;; esac

## Release artifacts in target/dist/ (scripts/dist.sh): a tarball (bin/pyro, bin/pyro-guest,
## docs, SHA256SUMS; unpack anywhere) and the `pyro-mcp` Python wheel (maturin, from PyPI into
## target/dist-tools), plus SHA256SUMS of both.
dist: packages build
	bash scripts/dist.sh

## Installs each artifact into a fresh prefix / venv (and through uvx) and runs the installed
## pyro by its path: version, doctor, tools/list per profile, a run, env list. Prints
## `N passed, M failed: dist-check`.
dist-check: setup dist
	$(TEST_ENV) bash scripts/dist-check.sh

install: build
	install -D -m 0755 $(PYRO) $(PREFIX)/bin/pyro
	install -D -m 0755 $(GUEST) $(PREFIX)/bin/pyro-guest

clean:
	$(CARGO) clean

# pyro-mcp build, test and demo entry points. `make demo` and `make test` work on a fresh
# Debian 12 machine as root: they install what is missing first (see scripts/setup.sh).

CARGO ?= cargo
TARGET := x86_64-unknown-linux-gnu
GUEST := target/$(TARGET)/release/pyro-guest
PYRO := target/release/pyro
PREFIX ?= $(HOME)/.local
# Test runs keep no warm spare VMs (each test's VMs end with it); tests/spares.rs turns
# them on for itself. `make demo` and `make bench` keep the product's default.
TEST_ENV := PYRO_SPARES=off

.PHONY: mcp-client setup packages build guest environment test test-security test-crash check fmt lint demo bench install clean smoke-user smoke-use-cases host-clis dist dist-check

## Host packages (root or sudo), the build, the guest kernel and the default environment.
setup: packages build environment

packages:
	bash scripts/setup.sh

# The guest agent is PID 1 in every VM: a static binary, so it runs in any rootfs.
guest:
	RUSTFLAGS="-C target-feature=+crt-static" $(CARGO) build --release --locked -p pyro-guest --target $(TARGET)

build: guest
	$(CARGO) build --release --locked -p pyro-cli
	cp $(GUEST) target/release/pyro-guest

# Fetches and verifies the Debian kernel, builds the initramfs and debian:12.
environment: build
	$(PYRO) env pull debian:12

fmt:
	$(CARGO) fmt --all

lint:
	$(CARGO) fmt --all -- --check
	python3 scripts/layers.py
	$(CARGO) clippy --release --locked --workspace --all-targets -- -D warnings

## Lint, then the whole test suite against real VMs (TCG where KVM is unusable), then (as
## root) the smoke as a fresh unprivileged user.
test: setup lint host-clis mcp-client
	$(TEST_ENV) PYRO_BIN=$(CURDIR)/$(PYRO) PYRO_GUEST_BIN=$(CURDIR)/$(GUEST) $(CARGO) test --release --locked --workspace
	$(MAKE) --no-print-directory smoke-user

## The attack suite (docs/security.md): hostile inputs against a real VM; prints
## `security: N tried, N held`. Not part of `cargo test --workspace` (CI runs it after `make test`).
test-security: build
	$(TEST_ENV) PYRO_BIN=$(CURDIR)/$(PYRO) PYRO_GUEST_BIN=$(CURDIR)/$(GUEST) $(CARGO) test --release --locked -p pyro-cli --test security -- --test-threads=1 --nocapture

## The kill -9 campaign (tests/crash.rs): at least 100 kills of `pyro` at random instants of
## create, exec, sync push, patch apply, export, reset and delete, each followed by status,
## list and an orphan check. Prints `crash: K kills, I inconsistent states, O orphans`.
test-crash: build
	$(TEST_ENV) PYRO_CRASH=1 PYRO_BIN=$(CURDIR)/$(PYRO) PYRO_GUEST_BIN=$(CURDIR)/$(GUEST) $(CARGO) test --release --locked -p pyro-cli --test crash -- --nocapture

## The five recipes of docs/use-cases/, end to end on real guests, through `pyro mcp serve` and
## the official TypeScript MCP SDK client (tests/use-cases/smoke.mjs), on the project in
## tests/use-cases/recipe-project. Builds debian:12-build once. Prints
## `use-case NAME: pass|FAIL SECONDS s` per recipe and `N passed, M failed: smoke-use-cases`.
smoke-use-cases: build mcp-client
	$(TEST_ENV) PYRO_BIN=$(CURDIR)/$(PYRO) bash scripts/smoke-use-cases.sh

# Claude Code's and Codex's real CLIs (from npm) for the host-helper tests; optional.
host-clis:
	@if command -v npm >/dev/null; then mkdir -p target/host-clis && cd target/host-clis && \
	  (npm install --silent --no-audit --no-fund @anthropic-ai/claude-code@2 @openai/codex >/dev/null 2>&1 || echo "host-clis: npm install failed; host tests use file edits only"); \
	else echo "host-clis: npm not found; host tests use file edits only"; fi

# The official TypeScript MCP SDK (from npm), the host-side client of tests/mcp_host_fit.rs.
mcp-client:
	@if command -v npm >/dev/null; then mkdir -p target/mcp-client && cd target/mcp-client && \
	  (npm install --silent --no-audit --no-fund @modelcontextprotocol/sdk@1 >/dev/null 2>&1 || echo "mcp-client: npm install failed"); \
	else echo "mcp-client: npm not found"; fi

# Needs root to create the test users; skipped otherwise.
smoke-user: build
	@if [ "$$(id -u)" = 0 ]; then bash scripts/smoke-user.sh; else echo "smoke-user: skipped (needs root to create test users)"; fi

check: test

demo: setup
	$(PYRO) demo

## Medians for boot, run and exec round trip (see docs/benchmarks.md).
bench: setup
	PYRO_BIN=$(CURDIR)/$(PYRO) PYRO_GUEST_BIN=$(CURDIR)/$(GUEST) $(CARGO) run --release --locked -p pyro-cli --bin pyro-bench

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

#!/usr/bin/env bash
# `make dist-check` (after `make dist`): installs each artifact into a fresh place and runs
# the installed `pyro` by its path, never a `pyro` on PATH or in target/:
#
#   tarball  unpacked into a fresh prefix, its SHA256SUMS verified, then PREFIX/.../bin/pyro
#   wheel    `pip install` into a fresh virtual environment, then VENV/bin/pyro
#   uvx      `uvx --from WHEEL pyro` (uv from target/dist-tools, offline, a private cache)
#
# The checks of each (version, doctor, tools/list per profile, a run, env list) are
# crates/pyro-cli/tests/dist.rs. Ends with `N passed, M failed: dist-check`.
set -uo pipefail
cd "$(dirname "$0")/.."

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)
dist=$PWD/target/dist
tools=$PWD/target/dist-tools
name=pyro-mcp-$version-x86_64-linux
tarball=$dist/$name.tar.gz
wheel=$(ls "$dist"/pyro_mcp-"$version"-*.whl 2>/dev/null | head -1)
tmp=$(mktemp -d /tmp/pyro-dist-check.XXXXXX)
trap 'rm -rf "$tmp"' EXIT

passed=0
failed=0
step() { # step DESCRIPTION COMMAND...: one install check
  local what=$1
  shift
  local out
  if out=$("$@" 2>&1); then
    echo "ok    $what"
    passed=$((passed + 1))
  else
    echo "FAIL  $what: $(echo "$out" | tail -3)"
    failed=$((failed + 1))
    return 1
  fi
}

targets=()
step "artifacts: SHA256SUMS of the tarball and the wheel" bash -c "cd '$dist' && sha256sum --quiet -c SHA256SUMS"

if step "tarball: unpack into a fresh prefix" tar -xzf "$tarball" -C "$tmp" &&
  step "tarball: its SHA256SUMS" bash -c "cd '$tmp/$name' && sha256sum --quiet -c SHA256SUMS" &&
  step "tarball: bin/pyro, bin/pyro-guest and the docs" test -x "$tmp/$name/bin/pyro" -a -x "$tmp/$name/bin/pyro-guest" -a -f "$tmp/$name/docs/public-contract.md"; then
  targets+=("tarball=$tmp/$name/bin/pyro")
fi

if step "wheel: a fresh virtual environment" python3 -m venv "$tmp/venv" &&
  step "wheel: pip install $(basename "${wheel:-missing.whl}")" "$tmp/venv/bin/pip" install --quiet --no-index --no-deps --disable-pip-version-check "${wheel:-missing.whl}" &&
  step "wheel: pyro and pyro-guest in the venv's bin" test -x "$tmp/venv/bin/pyro" -a -x "$tmp/venv/bin/pyro-guest"; then
  targets+=("wheel=$tmp/venv/bin/pyro")
fi

# uvx runs the wheel's pyro from an environment of its own (installed on first use).
export UV_CACHE_DIR=$tmp/uv-cache UV_NO_CONFIG=1 UV_PYTHON_DOWNLOADS=never
if step "uvx: --from the wheel, pyro --version" "$tools/bin/uvx" --offline --from "${wheel:-missing.whl}" pyro --version; then
  targets+=("uvx=$tools/bin/uvx --offline --from $wheel pyro")
fi

# The Python SDK from the wheel, in a fresh venv and through uvx: it finds the wheel's own
# `pyro` (no PYRO_BIN), and a throwaway VM runs.
py_check='import sys; from pyro_mcp import Pyro; r = Pyro(progress=False).run("debian:12", "echo from-the-wheel"); sys.exit(r.stdout != "from-the-wheel\n")'
step "wheel: python -c 'from pyro_mcp import Pyro; Pyro().run(...)'" env -u PYRO_BIN -u PYRO_GUEST_BIN "$tmp/venv/bin/python" -c "$py_check"
step "uvx: --from the wheel, python -c 'from pyro_mcp import Pyro; ...'" env -u PYRO_BIN -u PYRO_GUEST_BIN \
  "$tools/bin/uvx" --offline --from "${wheel:-missing.whl}" python -c "$py_check"

checks_log=$tmp/checks.log
if [ ${#targets[@]} -gt 0 ]; then
  # The ignored test `dist::installed_artifacts` of pyro-cli's one test binary, with the
  # flags of every other cargo call (the Makefile's CARGO_FLAGS), so it is the binary
  # `make test` built; it runs the installed binaries. Its libtest `test result:` line is
  # renamed: the checks are counted once, in the closing line below (.ci/run sums both kinds).
  PYRO_BIN= PYRO_GUEST_BIN= PYRO_DIST_TARGETS=$(printf '%s\n' "${targets[@]}") \
    ${CARGO:-cargo} test --release --locked --workspace --test main -- --ignored dist:: --nocapture 2>&1 |
    sed -u 's/^test result: /dist test result: /' | tee "$checks_log"
fi
read -r p f < <(sed -n 's/^checks: \([0-9]*\) passed, \([0-9]*\) failed$/\1 \2/p' "$checks_log" 2>/dev/null || true)
if [ -z "${p:-}" ]; then
  [ ${#targets[@]} -gt 0 ] && { echo "FAIL  the checks did not run to the end"; failed=$((failed + 1)); }
  p=0 f=0
fi
passed=$((passed + p))
failed=$((failed + f))
echo "$passed passed, $failed failed: dist-check"
[ "$failed" = 0 ]

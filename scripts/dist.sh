#!/usr/bin/env bash
# `make dist`: the release artifacts in target/dist/, from what `make build` built:
#
#   pyro-mcp-VERSION-x86_64-linux.tar.gz   bin/pyro, bin/pyro-guest, README.md, CHANGELOG.md,
#                                          docs/, SHA256SUMS; unpack anywhere, run bin/pyro
#   pyro_mcp-VERSION-cp39-abi3-*.whl       the Python distribution `pyro-mcp` (maturin, PyO3):
#                                          the `pyro_mcp` package (the Python SDK), and `pyro`
#                                          and `pyro-guest` into the environment's bin directory
#   SHA256SUMS                             both of the above
#
# maturin (and uv, for `make dist-check`'s uvx check) come from PyPI into a private virtual
# environment, target/dist-tools, made once.
set -euo pipefail
cd "$(dirname "$0")/.."

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)
target_dir=${CARGO_TARGET_DIR:-target}
pyro=$target_dir/release/pyro
guest=$target_dir/x86_64-unknown-linux-gnu/release/pyro-guest
dist=target/dist
tools=target/dist-tools
name=pyro-mcp-$version-x86_64-linux

for f in "$pyro" "$guest"; do
  [ -x "$f" ] || { echo "dist: $f is missing: run make build first" >&2; exit 1; }
done

# The packaging tools (pinned), once: a venv of their own (python3-venv on Debian; `make
# packages`), made again when the pins change.
pins="maturin==1.16.0 uv==0.13.9"
if [ ! -x "$tools/bin/maturin" ] || [ ! -x "$tools/bin/uv" ] || [ "$(cat "$tools/pins" 2>/dev/null)" != "$pins" ]; then
  echo "dist: installing $pins from PyPI into $tools"
  rm -rf "$tools"
  python3 -m venv "$tools" || { echo "dist: python3 -m venv failed: install python3-venv (make packages)" >&2; exit 1; }
  # shellcheck disable=SC2086 # one word per pin
  "$tools/bin/pip" install --quiet --disable-pip-version-check $pins
  echo "$pins" > "$tools/pins"
fi

rm -rf "$dist"
mkdir -p "$dist"
# Reproducible archives: the last commit's time, sorted names, no owners.
epoch=$(git log -1 --format=%ct 2>/dev/null || date +%s)

# (a) The tarball.
stage=$dist/stage/$name
mkdir -p "$stage/bin"
install -m 0755 "$pyro" "$stage/bin/pyro"
install -m 0755 "$guest" "$stage/bin/pyro-guest"
cp README.md CHANGELOG.md "$stage/"
mkdir -p "$stage/docs"
cp -r docs/. "$stage/docs/"
(cd "$stage" && find . -type f ! -name SHA256SUMS -printf '%P\n' | LC_ALL=C sort | xargs sha256sum > SHA256SUMS)
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$epoch" -C "$dist/stage" -cf - "$name" |
  gzip -n -9 > "$dist/$name.tar.gz"
rm -rf "$dist/stage"
echo "dist: $dist/$name.tar.gz"

# (b) The wheel: maturin compiles the Python module (crates/pyro-py, abi3) and packs it with
# python/pyro_mcp; `pyro` and the guest agent go in from the data directory pyproject.toml
# names, the very binaries `make build` made (checked below).
mkdir -p "$dist/wheel-data/scripts"
install -m 0755 "$pyro" "$dist/wheel-data/scripts/pyro"
install -m 0755 "$guest" "$dist/wheel-data/scripts/pyro-guest"
"$tools/bin/maturin" build --quiet --release --locked --out "$dist" ${CARGO_TARGET_DIR:+--target-dir "$CARGO_TARGET_DIR"}
rm -rf "$dist/wheel-data"
wheel=$(ls "$dist"/pyro_mcp-"$version"-*.whl)
for pair in "pyro:$pyro" "pyro-guest:$guest"; do
  member=pyro_mcp-$version.data/scripts/${pair%%:*}
  [ "$(python3 -c 'import sys, zipfile; sys.stdout.buffer.write(zipfile.ZipFile(sys.argv[1]).read(sys.argv[2]))' "$wheel" "$member" | sha256sum)" = "$(sha256sum < "${pair#*:}")" ] ||
    { echo "dist: the wheel's $member is not ${pair#*:}" >&2; exit 1; }
done
python3 -c 'import sys, zipfile; n = zipfile.ZipFile(sys.argv[1]).namelist(); sys.exit(not any(x.startswith("pyro_mcp/_native") for x in n) or "pyro_mcp/__init__.py" not in n)' "$wheel" ||
  { echo "dist: the wheel lacks the Python package or its native module" >&2; exit 1; }
echo "dist: $wheel"

(cd "$dist" && sha256sum "$name.tar.gz" "$(basename "$wheel")" > SHA256SUMS)
echo "dist: $dist/SHA256SUMS"

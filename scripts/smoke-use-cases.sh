#!/usr/bin/env bash
# `make smoke-use-cases`: the five recipes of docs/use-cases/ end to end on real guests,
# through `pyro mcp serve` and the official TypeScript MCP SDK client (tests/use-cases/smoke.mjs).
#
# Prepares a scratch dir: a git checkout of tests/use-cases/recipe-project (and a bare clone
# of it, the cold start's --repo-url), the untrusted archive (tests/use-cases/untrusted-drop
# plus a symlink to /etc/passwd and a `../` member), private data and runtime dirs; then runs
# the client, which prints `use-case NAME: pass|FAIL SECONDS s` per recipe and
# `N passed, M failed: smoke-use-cases`. Anything missing (node, the SDK, the binary, the
# environment) fails every recipe loudly: nothing is skipped.
#
# usage: scripts/smoke-use-cases.sh [RECIPE...]
#   PYRO_BIN (default target/release/pyro); PYRO_SMOKE_TRANSCRIPT=DIR keeps every call and
#   result as DIR/<recipe>.json; PYRO_SMOKE_KEEP=1 keeps the scratch dir (server logs in logs/).
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
recipes=(cold-start-repo-validation repro-fix-loop parallel-workspaces untrusted-inspection review-eval-workflows)
[ $# -gt 0 ] && recipes=("$@")

fail_all() {
  echo "smoke-use-cases: $*" >&2
  for r in "${recipes[@]}"; do echo "use-case $r: FAIL 0.0 s"; done
  echo "0 passed, ${#recipes[@]} failed: smoke-use-cases"
  exit 1
}

pyro=${PYRO_BIN:-$root/target/release/pyro}
client_dir=$root/target/mcp-client
[ -x "$pyro" ] || fail_all "$pyro is missing: run \`make build\`"
command -v node >/dev/null || fail_all "node is not installed (the MCP client is the TypeScript SDK)"
command -v git >/dev/null || fail_all "git is not installed"
[ -d "$client_dir/node_modules/@modelcontextprotocol/sdk" ] ||
  fail_all "the TypeScript MCP SDK is not installed: run \`make mcp-client\`"
# The recipes' environment (python3, venv, pip, curl): built once from the Debian archive,
# then cached; not part of any recipe's time.
t0=$SECONDS
"$pyro" env pull debian:12-build >/dev/null || fail_all "pyro env pull debian:12-build failed"
echo "smoke-use-cases: debian:12-build ready ($((SECONDS - t0)) s)"

work=$(mktemp -d /tmp/pyro-use-cases.XXXXXX)
cleanup() { [ "${PYRO_SMOKE_KEEP:-0}" = 1 ] && echo "smoke-use-cases: kept $work" >&2 || rm -rf "$work"; }
trap cleanup EXIT
export PYRO_DATA_DIR=$work/data PYRO_RUNTIME_DIR=$work/run
mkdir -p "$PYRO_DATA_DIR" "$PYRO_RUNTIME_DIR" "$work/out" "$work/scratch" "$work/inbox"
chmod 700 "$PYRO_RUNTIME_DIR"

# The project: a real git repository with one commit, and a bare clone of it.
cp -r tests/use-cases/recipe-project "$work/recipe-project"
git -C "$work/recipe-project" init -q -b main
git -C "$work/recipe-project" add -A
git -C "$work/recipe-project" -c user.email=smoke@pyro -c user.name=smoke commit -qm "recipe project"
git clone -q --bare "$work/recipe-project" "$work/recipe-project.git"

# The untrusted archive: the drop, a symlink leaving the tree and a member climbing out.
drop=$work/drop/plugin-drop
mkdir -p "$drop"
cp -r tests/use-cases/untrusted-drop/. "$drop/"
ln -s /etc/passwd "$drop/passwd"
echo "written outside the unpack dir" > "$drop/escape.txt"
tar -czf "$work/inbox/plugin-drop.tar.gz" -C "$work/drop" \
  --transform 's,^plugin-drop/escape\.txt$,../escape.txt,' plugin-drop 2>/dev/null ||
  fail_all "could not make the untrusted archive"

cp tests/use-cases/smoke.mjs "$client_dir/use-cases-smoke.mjs"
node "$client_dir/use-cases-smoke.mjs" "$pyro" "$work" "$@"

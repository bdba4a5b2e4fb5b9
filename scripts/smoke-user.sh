#!/usr/bin/env bash
# Guest-backed smoke as an unprivileged user with an empty home (run as root, e.g. from CI).
#
# Proves that nothing after package installation needs root: the kernel fetch, a real
# environment build (mmdebstrap --mode=unshare + builder VM), runs, the workspace loop and the
# MCP server all work as a normal user, ownership inside the image is right, and a second
# user can neither see nor reach the first user's workspace.
set -euo pipefail
cd "$(dirname "$0")/.."

[ "$(id -u)" = 0 ] || { echo "smoke-user: run as root (it creates test users)" >&2; exit 1; }
PREFIX=/opt/pyro-smoke
install -D -m 0755 target/release/pyro "$PREFIX/bin/pyro"
install -D -m 0755 target/x86_64-unknown-linux-gnu/release/pyro-guest "$PREFIX/bin/pyro-guest"

# shellcheck source=scripts/fresh-user.sh
. scripts/fresh-user.sh
A=pyro-smoke-a
B=pyro-smoke-b
fresh_user "$A"
fresh_user "$B"

# PYRO_SPARES=off: no warm spare VM outlives a step (B's checks read A's data dir).
as() { local u=$1; shift; runuser -u "$u" -- env -i HOME="/home/$u" USER="$u" PYRO_SPARES=off PATH="$PREFIX/bin:/usr/bin:/bin:/usr/sbin:/sbin" "$@"; }
step() { echo "== smoke-user: $*"; }
fail() { echo "smoke-user: FAILED: $*" >&2; exit 1; }

step "doctor as $A"
as "$A" pyro doctor --json > /tmp/smoke-doctor.json || true
grep -q '"vm_boot": true' /tmp/smoke-doctor.json || fail "doctor: vm_boot is not true: $(cat /tmp/smoke-doctor.json)"

step "env pull debian:12 as $A (a real rootless build)"
as "$A" pyro env pull debian:12

step "run git --version and check ownership inside the guest"
out=$(as "$A" pyro run debian:12 -- sh -c 'git --version; stat -c %U /etc/shadow; stat -c %A /usr/bin/su' 2>/dev/null)
echo "$out"
echo "$out" | grep -q '^git version' || fail "git --version"
[ "$(echo "$out" | sed -n 2p)" = root ] || fail "/etc/shadow is not owned by root in the guest"
echo "$out" | sed -n 3p | grep -q '^-rws' || fail "/usr/bin/su lost its setuid bit"

step "workspace loop as $A"
seed=$(as "$A" mktemp -d)
as "$A" sh -c "cd $seed && printf 'a\n' > f.txt && git init -q && git add . && git -c user.email=s@s -c user.name=s commit -qm init"
id=$(as "$A" pyro workspace create debian:12 --seed-path "$seed" --name smoke --id-only 2>/dev/null)
[ -n "$id" ] || fail "workspace create"
[ "$(as "$A" pyro workspace exec smoke -- cat f.txt 2>/dev/null)" = a ] || fail "workspace exec"
as "$A" pyro workspace file write smoke g.txt --text 'hello' >/dev/null
printf -- '--- a/f.txt\n+++ b/f.txt\n@@ -1 +1 @@\n-a\n+b\n' > /tmp/smoke.patch
chmod 644 /tmp/smoke.patch
as "$A" pyro workspace patch apply smoke --patch-file /tmp/smoke.patch >/dev/null
# Captured first: `grep -q` stops reading at the first match, and pyro then dies of SIGPIPE,
# which `pipefail` would report as a failure.
summary=$(as "$A" pyro workspace summary smoke --json)
grep -q '"patches": 1' <<<"$summary" || fail "summary: $summary"
as "$A" pyro workspace export smoke f.txt --output "$seed/out.txt" >/dev/null
[ "$(cat "$seed/out.txt")" = b ] || fail "export"

step "a second user cannot see or reach $A's workspace"
[ "$(as "$B" pyro workspace list --json | grep -c '"id"')" = 0 ] || fail "$B sees workspaces"
set +e
as "$B" pyro workspace status "$id" > /tmp/smoke-b.out 2>&1; rc=$?
as "$B" env PYRO_DATA_DIR="/home/$A/.local/share/pyro-mcp" PYRO_RUNTIME_DIR="/home/$A/.cache/pyro-mcp/run" \
  pyro workspace exec "$id" -- true > /tmp/smoke-b2.out 2>&1; rc2=$?
set -e
[ $rc = 3 ] || fail "$B: status of $A's workspace exited $rc: $(cat /tmp/smoke-b.out)"
[ $rc2 != 0 ] || fail "$B reached $A's workspace"
grep -q '^error: ' /tmp/smoke-b2.out || fail "$B got no clear error: $(cat /tmp/smoke-b2.out)"
! grep -q 'panicked' /tmp/smoke-b.out /tmp/smoke-b2.out || fail "stack trace shown to $B"
echo "$B: $(head -1 /tmp/smoke-b2.out)"

step "mcp serve answers tools/list as $A"
resp=$( { printf '%s\n' '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"smoke","version":"0"}}}' \
                        '{"jsonrpc":"2.0","method":"notifications/initialized"}' \
                        '{"jsonrpc":"2.0","id":2,"method":"tools/list"}'; sleep 2; } | as "$A" pyro mcp serve 2>/dev/null | tail -1)
echo "$resp" | grep -q '"workspace_create"' || fail "mcp tools/list: $resp"

as "$A" pyro workspace delete smoke >/dev/null
pgrep -u "$A" -f '__supervise|qemu-system' >/dev/null && fail "processes left behind for $A"
echo "1 passed, 0 failed: smoke-user"

#!/usr/bin/env bash
# `make bench`: a cold `pyro env pull debian:12` as a fresh unprivileged user (empty home, no
# kernel, no image, no template), timed step by step from its progress lines: the kernel
# fetch, mmdebstrap, the unpack into the ext4 image in a builder VM, and the warm template.
# Needs root (it creates the user); prints a skip line otherwise. Downloads from the Debian
# mirror, as a user's first pull does.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then echo "env pull, cold, unprivileged user: skipped (needs root to create a user)"; exit 0; fi
PREFIX=/opt/pyro-bench
install -D -m 0755 target/release/pyro "$PREFIX/bin/pyro"
install -D -m 0755 target/x86_64-unknown-linux-gnu/release/pyro-guest "$PREFIX/bin/pyro-guest"
u=pyro-bench-pull
# shellcheck source=scripts/fresh-user.sh
. scripts/fresh-user.sh
fresh_user "$u" 300000
log=$(mktemp)
# The user, its VMs and the log go whatever happens (a failed pull included).
trap 'pkill -KILL -u "$u" 2>/dev/null || true; userdel -r "$u" >/dev/null 2>&1 || true; rm -f "$log"' EXIT
start=$(date +%s%N)
runuser -u "$u" -- env -i HOME="/home/$u" USER="$u" PYRO_SPARES=off PATH="$PREFIX/bin:/usr/bin:/bin:/usr/sbin:/sbin" \
  pyro env pull debian:12 2>&1 | while IFS= read -r l; do echo "$(( ($(date +%s%N) - start) / 1000000 )) $l"; done > "$log"
total=$(( ($(date +%s%N) - start) / 1000000 ))
# The first line of each step, in ms since the start.
at() { grep -m1 -- "$1" "$log" | cut -d' ' -f1; }
k=$(at 'env: building'); m=$(at 'env: hashing'); t=$(at 'template: booting')
awk -v T="$total" -v k="$k" -v m="$m" -v t="$t" 'BEGIN { printf "%-42s %8.1f s  (kernel %.1f, mmdebstrap %.1f, image unpack %.1f, template %.1f)\n", \
  "env pull debian:12, cold, unprivileged", T/1000, k/1000, (m-k)/1000, (t-m)/1000, (T-t)/1000 }'

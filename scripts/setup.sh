#!/usr/bin/env bash
# Installs the host packages pyro needs (the only step that needs root), and the ones its
# tests use: docker-registry and skopeo (a real OCI registry on loopback), busybox-static
# (a static binary to put in test images) and Node.js with npm (the chat hosts' CLIs and the
# official TypeScript MCP client; a Node.js already installed is kept), and python3 with venv
# (`make dist` installs maturin from PyPI into a private virtual environment), and chromium
# (the `pyro ui` tests drive Debian's headless browser through Playwright; fonts-liberation,
# only recommended by it, so screenshots have text).
#
# On Debian/Ubuntu it uses apt; elsewhere it says what to install. It also resolves the
# qemu-utils/qemu-system-x86 version clash some Debian 12 images have (qemu-utils from
# backports Breaks the distribution's qemu-system-common): qemu-img must come from the same
# release as qemu-system-x86, so it is pinned to that release, downgrading if needed.
set -euo pipefail

have_all() {
  command -v qemu-system-x86_64 >/dev/null && command -v qemu-img >/dev/null &&
    command -v mmdebstrap >/dev/null && command -v bwrap >/dev/null && command -v gpgv >/dev/null &&
    command -v newuidmap >/dev/null && command -v mke2fs >/dev/null && command -v git >/dev/null &&
    command -v docker-registry >/dev/null && command -v skopeo >/dev/null && [ -x /bin/busybox ] &&
    command -v npm >/dev/null && python3 -c 'import ensurepip, venv' 2>/dev/null &&
    command -v chromium >/dev/null
}

qemu_versions_match() {
  command -v dpkg-query >/dev/null || return 0
  local sys utils
  sys=$(dpkg-query -W -f='${Version}' qemu-system-x86 2>/dev/null || true)
  utils=$(dpkg-query -W -f='${Version}' qemu-utils 2>/dev/null || true)
  [ -n "$sys" ] && [ "$sys" = "$utils" ]
}

if have_all && qemu_versions_match; then
  echo "setup: host packages present"
  exit 0
fi

if ! command -v apt-get >/dev/null; then
  echo "setup: please install with your package manager: qemu-system-x86 qemu-img mmdebstrap bubblewrap gnupg (gpgv) shadow-utils (newuidmap) e2fsprogs git, and for the tests: docker-registry (distribution) skopeo busybox (static) nodejs npm chromium, and for make dist: python3 with venv" >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null || { echo "setup: run as root to install packages" >&2; exit 1; }
  SUDO="sudo"
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
. /etc/os-release
codename="${VERSION_CODENAME:-}"
# Pin qemu-utils to the release qemu-system-x86 comes from (the distribution's own).
utils="qemu-utils"
policy=$(apt-cache policy qemu-utils)
if [ -n "$codename" ] && [[ "$policy" == *" $codename/"* ]]; then
  utils="qemu-utils/$codename"
fi
$SUDO apt-get install -y -qq --no-install-recommends --allow-downgrades \
  qemu-system-x86 "$utils" mmdebstrap bubblewrap gpgv uidmap e2fsprogs ca-certificates git \
  docker-registry skopeo busybox-static chromium fonts-liberation >/dev/null
command -v npm >/dev/null || $SUDO apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
python3 -c 'import ensurepip, venv' 2>/dev/null ||
  $SUDO apt-get install -y -qq --no-install-recommends python3 python3-venv >/dev/null
command -v qemu-img >/dev/null || { echo "setup: qemu-img missing after install" >&2; exit 1; }
command -v qemu-system-x86_64 >/dev/null || { echo "setup: qemu-system-x86_64 missing after install" >&2; exit 1; }
echo "setup: installed $(qemu-system-x86_64 --version | head -1)"

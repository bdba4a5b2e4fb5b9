# Sourced by scripts that need a fresh unprivileged user (smoke-user.sh, bench-pull-user.sh;
# run as root): `fresh_user NAME [FIRST_SUBID]` kills the user's processes, removes the user
# and its home if they exist, creates it again with a home, and gives it 65536 subordinate
# uids and gids from FIRST_SUBID (200000 by default) for rootless image builds.
fresh_user() {
  local u=$1 first=${2:-200000}
  if id "$u" >/dev/null 2>&1; then
    pkill -KILL -u "$u" 2>/dev/null || true
    userdel -r "$u" >/dev/null 2>&1 || true
  fi
  useradd -m -s /bin/bash "$u"
  grep -q "^$u:" /etc/subuid || usermod --add-subuids "$first-$((first + 65535))" "$u"
  grep -q "^$u:" /etc/subgid || usermod --add-subgids "$first-$((first + 65535))" "$u"
}

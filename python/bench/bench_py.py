"""`make bench`'s Python figures (PYRO_BENCH_ONLY=python runs only these): the Python SDK's
`ws.exec("true")` round trip (next to pyro-bench's `workspace exec true (SDK)`, the Rust SDK's:
the difference is the binding's overhead), the same from 4 asyncio tasks at once, and the wall
time of an Inspect eval of 4 samples with `sandbox="pyro"` (when Inspect is installed).
Prints medians in pyro-bench's format; asserts nothing."""

import asyncio
import os
import statistics
import sys
import tempfile
import time
from typing import Any, Callable, List

from pyro_mcp import AsyncPyro, Pyro


def line(what: str, ms: List[float], unit: str = "ms") -> None:
    print(f"{what:<43}median {statistics.median(ms):>8.1f} {unit}  (min {min(ms):.1f}, max {max(ms):.1f}, n={len(ms)})")


def timed(f: Callable[[], Any], n: int) -> List[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        f()
        out.append((time.perf_counter() - t) * 1000)
    return out


def main() -> None:
    pyro = Pyro(progress=False)
    with pyro.workspaces.create("debian:12", name="bench-py") as ws:
        ws.exec("true")
        line("python: ws.exec('true') round trip", timed(lambda: ws.exec("true"), 30))
        line("python: ws.status() round trip", timed(ws.status, 30))

    async def four() -> List[float]:
        apyro = AsyncPyro(progress=False)
        async with await apyro.workspaces.create("debian:12", name="bench-aio") as aws:
            await aws.exec("true")
            rounds = []
            for _ in range(10):
                t = time.perf_counter()
                await asyncio.gather(*(aws.exec("sleep 0.5") for _ in range(4)))
                rounds.append((time.perf_counter() - t) * 1000)
            return rounds

    line("python: 4 x exec 'sleep 0.5' via asyncio", asyncio.run(four()))
    try:
        import inspect_ai  # noqa: F401
    except ImportError:
        print("python: inspect eval: skipped (inspect_ai not installed)")
        return
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
    from inspect_ai import Task, eval
    from inspect_ai.dataset import Sample
    from test_inspect import all_checks, exercise

    walls = []
    for _ in range(3):
        task = Task(
            dataset=[Sample(input=f"s{i}", target="ok", metadata={"i": i}) for i in range(4)],
            solver=exercise(),
            scorer=all_checks(),
            sandbox="pyro",
        )
        t = time.perf_counter()
        logs = eval(task, model="mockllm/model", log_dir=tempfile.mkdtemp(), display="none")
        walls.append(time.perf_counter() - t)
        assert logs[0].status == "success"
    line("python: inspect eval, 4 samples (wall)", walls, unit="s")


if __name__ == "__main__":
    main()

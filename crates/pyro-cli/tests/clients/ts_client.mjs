// A real MCP host-side client for the tests: the official TypeScript SDK's Client over stdio
// (or over Streamable HTTP when PYRO_MCP_URL is set, with PYRO_MCP_TOKEN as the bearer
// token: then PYRO and SERVE ARGS are ignored), driving `pyro mcp serve` the way chat hosts do (progress tokens, per-call timeouts that reset
// on progress, cancellation through an AbortSignal). Prints one JSON object with what it saw;
// the Rust test (tests/mcp_host_fit.rs) asserts on it.
//
// usage: node ts_client.mjs SCENARIO PYRO [SERVE ARGS...]   (SDK found through NODE_PATH)
// PYRO_GUEST_PS: the guest script that lists processes from /proc (common::GUEST_PS in the
// Rust tests; the debian:12 image has no pgrep or ps), parsed here as common::parse_guest_ps does.

import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const [scenario, pyro, ...serveArgs] = process.argv.slice(2);
const out = { scenario };
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const url = process.env.PYRO_MCP_URL;
const transport = url
  ? new StreamableHTTPClientTransport(new URL(url), {
      requestInit: { headers: { Authorization: `Bearer ${process.env.PYRO_MCP_TOKEN ?? ""}` } },
    })
  : new StdioClientTransport({
      command: pyro,
      args: ["mcp", "serve", ...serveArgs],
      env: { ...process.env },
      stderr: "ignore",
    });
const client = new Client({ name: "pyro-test-ts", version: "1.0.0" });
const t0 = Date.now();
await client.connect(transport);
out.initialize_ms = Date.now() - t0;
out.protocol = transport.protocolVersion ?? null;
out.instructions_chars = (client.getInstructions() || "").length;

// One tool call with a progress token; returns the result and the progress it saw.
async function call(name, args, opts = {}) {
  const progress = [];
  const started = Date.now();
  const result = await client.callTool({ name, arguments: args }, undefined, {
    onprogress: (p) => progress.push({ at: Date.now() - started, message: p.message || "" }),
    timeout: 60_000,
    resetTimeoutOnProgress: true,
    maxTotalTimeout: 900_000,
    ...opts,
  });
  return { result, progress, ms: Date.now() - started };
}

function structured(r, what) {
  if (r.result.isError) throw new Error(`${what} failed: ${JSON.stringify(r.result.structuredContent)}`);
  return r.result.structuredContent;
}

const GUEST_PS = process.env.PYRO_GUEST_PS;
if (!GUEST_PS) throw new Error("PYRO_GUEST_PS is not set (tests/mcp_host_fit.rs sets it)");

// The guest's processes from GUEST_PS's output: `/proc/PID/comm:NAME` and one
// `/proc/PID/cmdline:ARG` line per argument.
function guestProcesses(text) {
  const procs = new Map();
  for (const line of text.split("\n")) {
    const m = /^\/proc\/(\d+)\/(comm|cmdline):(.*)$/.exec(line);
    if (!m) continue;
    const p = procs.get(m[1]) ?? { pid: Number(m[1]), comm: "", argv: [] };
    if (m[2] === "comm") p.comm = m[3];
    else p.argv.push(m[3]);
    procs.set(m[1], p);
  }
  return [...procs.values()];
}

// How many guest processes run exactly `argv`.
async function running(id, argv, opts = {}) {
  const r = structured(await call("workspace_exec", { workspace_id: id, command: GUEST_PS }, opts), "guest ps");
  return guestProcesses(r.stdout).filter((p) => JSON.stringify(p.argv) === JSON.stringify(argv)).length;
}

if (scenario === "session") {
  const ws = structured(await call("workspace_create", { name: "ts-host-fit" }), "create");
  const id = ws.id;

  // A 30 s command: progress at least every 10 s, with the last line of output.
  const cmd = "for i in $(seq 1 30); do echo tick $i; sleep 1; done";
  const long = await call("workspace_exec", { workspace_id: id, command: cmd, timeout_seconds: 120 });
  const x = structured(long, "long exec");
  const gaps = [];
  let prev = 0;
  for (const p of long.progress) {
    gaps.push(p.at - prev);
    prev = p.at;
  }
  gaps.push(long.ms - prev);
  out.long = {
    exit_code: x.exit_code,
    ms: long.ms,
    progress_count: long.progress.length,
    max_gap_ms: Math.max(...gaps),
    messages: long.progress.map((p) => p.message),
    text: long.result.content?.[0]?.text ?? "",
    result_bytes: JSON.stringify(long.result).length,
  };

  // A typical result: 100 lines of output, as the model receives it.
  const typical = await call("workspace_exec", { workspace_id: id, command: "seq -f 'line %g of the output' 1 100" });
  out.typical = {
    structured_bytes: JSON.stringify(typical.result.structuredContent).length,
    text_bytes: (typical.result.content?.[0]?.text ?? "").length,
    result_bytes: JSON.stringify(typical.result).length,
  };

  // Cancel a `sleep 600` after 3 s; then see how long until it is gone from the guest.
  const ac = new AbortController();
  const pending = call("workspace_exec", { workspace_id: id, command: "sleep 600", timeout_seconds: 900 }, { signal: ac.signal })
    .then(() => "finished")
    .catch((e) => `rejected: ${e.message}`);
  await sleep(3000);
  // The same check as below, while the command runs: it must see it (so "gone" means gone).
  const before = await running(id, ["sleep", "600"], { timeout: 30_000, resetTimeoutOnProgress: false });
  const abortedAt = Date.now();
  ac.abort("the user pressed Esc");
  out.cancel = { client_saw: await pending, running_before_abort: before };
  let goneMs = null;
  for (let i = 0; i < 100; i++) {
    if ((await running(id, ["sleep", "600"])) === 0) {
      goneMs = Date.now() - abortedAt;
      break;
    }
    await sleep(100);
  }
  out.cancel.gone_ms = goneMs;
  // The polls above include a round trip each; the first one that saw it gone bounds it.
  const logs = structured(await call("workspace_logs", { workspace_id: id }), "logs");
  out.cancel.history = logs.entries.filter((e) => e.command === "sleep 600");
  const after = structured(await call("workspace_exec", { workspace_id: id, command: "echo still usable" }), "after");
  out.cancel.after = after.stdout;
  const tools = await client.listTools();
  out.tools = tools.tools.map((t) => ({ name: t.name, title: t.title, meta: t._meta ?? null }));
  structured(await call("workspace_delete", { workspace_id: id }), "delete");
} else if (scenario === "slow-clone") {
  // The server was started with --repo-url pointing at a source that never answers: it must
  // have answered initialize at once; a create that waits for the clone can be cancelled.
  const ac = new AbortController();
  const started = Date.now();
  const pending = call("workspace_create", {}, { signal: ac.signal }).then(
    (r) => `finished: ${JSON.stringify(r.result.structuredContent)}`,
    (e) => `rejected: ${e.message}`,
  );
  await sleep(2000);
  ac.abort("give up");
  out.create = { client_saw: await pending, ms: Date.now() - started };
  const list = await call("workspace_list", {});
  out.list = list.result.structuredContent;
} else {
  throw new Error(`unknown scenario ${scenario}`);
}

console.log(JSON.stringify(out));
await client.close();

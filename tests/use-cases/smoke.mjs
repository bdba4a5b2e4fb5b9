// `make smoke-use-cases`: the five recipes of docs/use-cases/ end to end, on real guests,
// through `pyro mcp serve` and the official TypeScript MCP SDK client (from npm, installed by
// `make mcp-client`), the way a chat host drives it. No SDK shortcut, no direct CLI call.
//
// usage: node smoke.mjs PYRO WORK [RECIPE...]
//   PYRO  the `pyro` binary;  WORK  a scratch dir prepared by scripts/smoke-use-cases.sh:
//   WORK/recipe-project (a git checkout of tests/use-cases/recipe-project), WORK/recipe-project.git
//   (a bare clone, the cold start's --repo-url), WORK/inbox/plugin-drop.tar.gz (the untrusted
//   archive), WORK/out (where exports go), WORK/scratch (an empty dir, no project).
//   PYRO_DATA_DIR and PYRO_RUNTIME_DIR are set by the caller to private dirs under WORK.
//   PYRO_SMOKE_TRANSCRIPT=DIR writes every call and its result to DIR/<recipe>.json.
//
// Prints one line per recipe, `use-case NAME: pass|FAIL SECONDS s` (a FAIL is followed by
// indented lines saying why), then `N passed, M failed: smoke-use-cases`. Exits 1 on any FAIL.

import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import fs from "node:fs";
import path from "node:path";

const [pyro, work, ...only] = process.argv.slice(2);
const runtimeDir = process.env.PYRO_RUNTIME_DIR;
const transcriptDir = process.env.PYRO_SMOKE_TRANSCRIPT || "";
const ENV = "debian:12-build";
const project = path.join(work, "recipe-project");
const out = path.join(work, "out");
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function check(cond, what) {
  if (!cond) throw new Error(what);
}

// The one-line fix and the other candidates of the parallel recipe, as `git diff` makes them.
const discountPy = fs.readFileSync(path.join(project, "pricing/discount.py"), "utf8");
const BUGGY = "    return cents * percent // 100";
const FIXES = {
  a: "    return cents * (100 - percent) // 100",
  b: "    return cents - percent",
  c: "    return cents - cents * percent // 100",
};
/** A unified diff replacing line `from` by `to` in `file` (text `text`), 3 lines of context. */
function oneLinePatch(file, text, from, to) {
  const lines = text.split("\n");
  if (lines[lines.length - 1] === "") lines.pop();
  const i = lines.indexOf(from);
  if (i < 0) throw new Error(`${from} not in ${file}`);
  const lo = Math.max(0, i - 3);
  const hi = Math.min(lines.length, i + 4);
  const before = lines.slice(lo, i).map((l) => ` ${l}`);
  const after = lines.slice(i + 1, hi).map((l) => ` ${l}`);
  const n = hi - lo;
  return [
    `--- a/${file}`,
    `+++ b/${file}`,
    `@@ -${lo + 1},${n} +${lo + 1},${n} @@`,
    ...before,
    `-${from}`,
    `+${to}`,
    ...after,
    "",
  ].join("\n");
}
const fixPatch = (k) => oneLinePatch("pricing/discount.py", discountPy, BUGGY, FIXES[k]);

/** One MCP session: `pyro mcp serve ARGS` started in `cwd`, every call recorded. */
class Session {
  constructor(recipe) {
    this.recipe = recipe;
    this.calls = [];
  }

  async open(serveArgs, cwd) {
    this.serveArgs = serveArgs;
    const logs = path.join(work, "logs");
    fs.mkdirSync(logs, { recursive: true });
    this.transport = new StdioClientTransport({
      command: pyro,
      args: ["mcp", "serve", ...serveArgs],
      cwd,
      env: { ...process.env },
      stderr: "pipe",
    });
    const log = fs.createWriteStream(path.join(logs, `${this.recipe}.server.log`));
    this.transport.stderr?.pipe(log);
    this.client = new Client({ name: "pyro-smoke-use-cases", version: "1.0.0" });
    await this.client.connect(this.transport);
    this.tools = (await this.client.listTools()).tools.map((t) => t.name);
  }

  /** A tool call as hosts make it (progress token, timeout reset by progress); the result. */
  async raw(tool, args, timeoutMs = 120_000) {
    check(this.tools.includes(tool), `${tool} is not offered by pyro mcp serve ${this.serveArgs.join(" ")}`);
    const started = Date.now();
    let progress = 0;
    const result = await this.client.callTool({ name: tool, arguments: args }, undefined, {
      onprogress: () => progress++,
      timeout: timeoutMs,
      resetTimeoutOnProgress: true,
      maxTotalTimeout: 900_000,
    });
    const ms = Date.now() - started;
    this.calls.push({
      tool,
      arguments: args,
      ms,
      progress_notifications: progress,
      isError: !!result.isError,
      text: result.content?.map((c) => c.text ?? "").join("\n") ?? "",
      structuredContent: result.structuredContent ?? null,
    });
    return result;
  }

  /** A call that must succeed: its structured content. */
  async ok(tool, args, timeoutMs) {
    const r = await this.raw(tool, args, timeoutMs);
    if (r.isError) {
      const e = r.structuredContent?.error;
      throw new Error(`${tool} failed: ${e ? `${e.code}: ${e.message}` : JSON.stringify(r.content)}`);
    }
    return r.structuredContent;
  }

  /** A call that must fail with `code`: its error. */
  async fails(tool, args, code) {
    const r = await this.raw(tool, args);
    check(r.isError, `${tool} should have failed (${code}), it returned ${JSON.stringify(r.structuredContent)}`);
    const e = r.structuredContent?.error ?? {};
    check(e.code === code, `${tool}: expected ${code}, got ${e.code}: ${e.message}`);
    return e;
  }

  /** Delete whatever this session's project still has (a failed recipe leaves workspaces). */
  async cleanup() {
    if (!this.client) return;
    try {
      const list = await this.client.callTool({ name: "workspace_list", arguments: {} });
      for (const w of list.structuredContent?.workspaces ?? []) {
        await this.client.callTool({ name: "workspace_delete", arguments: { workspace_id: w.id } });
      }
    } catch {
      // reported by the leftover check
    }
  }

  async close() {
    try {
      await this.client?.close();
    } catch {
      // already gone
    }
    if (transcriptDir) {
      fs.mkdirSync(transcriptDir, { recursive: true });
      const file = path.join(transcriptDir, `${this.recipe}.json`);
      fs.writeFileSync(file, JSON.stringify({ serve: this.serveArgs, calls: this.calls }, null, 2));
    }
  }
}

/**
 * Read a shell until `re` matches what it printed since `cursor`: reads with an idle wait
 * (they return once the shell was quiet for 1 s, at once when it already is, e.g. while a
 * command computes before printing), so poll until the match, within 3 minutes.
 */
async function shellUntil(s, id, shell, cursor, re, what) {
  let text = "";
  const deadline = Date.now() + 180_000;
  while (Date.now() < deadline) {
    const r = await s.ok("shell_read", { workspace_id: id, shell_id: shell, cursor, plain: true, wait_for_idle_ms: 1000 });
    text += r.output;
    cursor = r.next_cursor;
    const m = text.match(re);
    if (m) return { text, cursor, m };
    check(r.alive, `the shell ended while waiting for ${what}: ${text}`);
    if (!r.output) await sleep(500);
  }
  throw new Error(`no ${what} in the shell within 3 minutes: ${text}`);
}

const TESTS = "python3 -B -m unittest -v";
// A venv without its own pip (ensurepip alone takes over 30 s under TCG), filled by the
// system pip without byte-compiling (which costs more than the download there).
const INSTALL =
  "python3 -m venv --without-pip /root/venv && python3 -m pip --python /root/venv/bin/python install -q --no-compile -r requirements-dev.txt";

// ---------------------------------------------------------------------------------------------
// The recipes. Each gets a fresh server and deletes what it made.

const recipes = {
  // workspace-full: a clean clone of a real repository, dependencies from PyPI over an allow
  // list, the tests, the dev service with readiness, the summary.
  async "cold-start-repo-validation"(s) {
    await s.open(["--profile", "workspace-full", "--repo-url", `file://${work}/recipe-project.git`], path.join(work, "scratch"));
    const ws = await s.ok("workspace_create", {
      environment: ENV,
      name: "cold-start",
      network_policy: "egress",
      allow_domains: ["pypi.org", "files.pythonhosted.org"],
    });
    check(ws.seed_source?.kind === "repo_url" || JSON.stringify(ws.seed_source).includes("recipe-project.git"), `seed_source ${JSON.stringify(ws.seed_source)}`);
    const id = ws.id;
    const readme = await s.ok("workspace_file_read", { workspace_id: id, path: "README.md" });
    check(readme.content.includes("requirements-dev.txt"), "README does not say how to install");
    const install = await s.ok(
      "workspace_exec",
      { workspace_id: id, command: INSTALL, timeout_seconds: 900 },
      300_000,
    );
    check(install.exit_code === 0, `pip install exited ${install.exit_code}: ${install.stderr.slice(-800)}`);
    const test = await s.ok("workspace_exec", {
      workspace_id: id,
      command: "/root/venv/bin/pytest -q -p no:cacheprovider",
      env: { PYTHONDONTWRITEBYTECODE: "1" },
      timeout_seconds: 300,
    });
    check(test.exit_code === 1 && /1 failed, 3 passed/.test(test.stdout), `pytest: exit ${test.exit_code}: ${test.stdout.slice(-600)}`);
    const svc = await s.ok("service_start", {
      workspace_id: id,
      name: "web",
      command: "python3 -B -m pricing.server --port 8080",
      ready_http: "http://127.0.0.1:8080/health",
      ready_timeout_seconds: 60,
    });
    check(svc.state === "ready", `service state ${svc.state}`);
    const quote = await s.ok("workspace_exec", { workspace_id: id, command: "curl -sS 'http://127.0.0.1:8080/quote?cents=2000&percent=15'" });
    check(quote.exit_code === 0 && quote.stdout.includes('"total": 300'), `quote: ${quote.stdout}${quote.stderr}`);
    // Off the allow list: refused on the host, counted in the summary.
    const off = await s.ok("workspace_exec", { workspace_id: id, command: "curl -sS -m 10 -o /dev/null https://example.com/ && echo reached || echo refused" });
    check(off.stdout.trim() === "refused", `example.com: ${off.stdout}${off.stderr}`);
    const logs = await s.ok("service_logs", { workspace_id: id, name: "web", tail_lines: 20 });
    check((logs.stdout + logs.stderr).includes("GET /quote"), `service logs: ${JSON.stringify(logs)}`);
    const sum = await s.ok("workspace_summary", { workspace_id: id });
    check(JSON.stringify(sum).includes("web"), "the summary does not list the service");
    await s.ok("workspace_delete", { workspace_id: id });
  },

  // workspace-core: failing test, read, patch, rerun, diff, summary, export the fix.
  async "repro-fix-loop"(s) {
    await s.open(["--allow-root", out], project);
    const ws = await s.ok("workspace_create", { environment: ENV, name: "repro" });
    const id = ws.id;
    const red = await s.ok("workspace_exec", { workspace_id: id, command: TESTS });
    check(red.exit_code === 1 && red.stderr.includes("FAIL: test_discount_takes_percent_off"), `first run: exit ${red.exit_code}: ${red.stderr.slice(-600)}`);
    const file = await s.ok("workspace_file_read", { workspace_id: id, path: "pricing/discount.py" });
    check(file.content.includes(BUGGY), "the bug is not in pricing/discount.py");
    const patched = await s.ok("workspace_patch_apply", { workspace_id: id, patch: fixPatch("a") });
    check(JSON.stringify(patched).includes("pricing/discount.py"), `patch: ${JSON.stringify(patched)}`);
    const green = await s.ok("workspace_exec", { workspace_id: id, command: TESTS });
    check(green.exit_code === 0 && /\nOK\s*$/.test(green.stderr), `rerun: exit ${green.exit_code}: ${green.stderr.slice(-600)}`);
    const diff = await s.ok("workspace_diff", { workspace_id: id });
    check(diff.patch.includes(`+${FIXES.a}`) && diff.patch.includes(`-${BUGGY}`), `diff: ${diff.patch}`);
    const sum = await s.ok("workspace_summary", { workspace_id: id });
    check(JSON.stringify(sum).includes("pricing/discount.py"), "the summary does not name the patched file");
    await s.ok("workspace_export", { workspace_id: id, path: "pricing/discount.py", output_path: path.join(out, "discount.py") });
    const exported = fs.readFileSync(path.join(out, "discount.py"), "utf8");
    check(exported.includes(FIXES.a), "the exported file is not the fixed one");
    await s.ok("workspace_delete", { workspace_id: id });
  },

  // workspace-core: three workspaces from one checkout, a different candidate fix in each,
  // compared by their test runs, diffs and summaries, then all deleted.
  async "parallel-workspaces"(s) {
    await s.open([], project);
    const names = ["fix-a", "fix-b", "fix-c"];
    const made = await Promise.all(
      names.map((name) => s.ok("workspace_create", { environment: ENV, name, labels: { candidate: name.slice(4) }, mem_mib: 512 })),
    );
    const ids = made.map((w) => w.id);
    await Promise.all(ids.map((id, i) => s.ok("workspace_patch_apply", { workspace_id: id, patch: fixPatch(names[i].slice(4)) })));
    const runs = await Promise.all(ids.map((id) => s.ok("workspace_exec", { workspace_id: id, command: TESTS })));
    const codes = runs.map((r) => r.exit_code);
    check(JSON.stringify(codes) === "[0,1,1]", `exit codes of fix-a, fix-b, fix-c: ${codes}`);
    const diffs = await Promise.all(ids.map((id) => s.ok("workspace_diff", { workspace_id: id })));
    diffs.forEach((d, i) => check(d.patch.includes(`+${FIXES[names[i].slice(4)]}`), `${names[i]} diff: ${d.patch}`));
    const sums = await Promise.all(ids.map((id) => s.ok("workspace_summary", { workspace_id: id })));
    check(sums.every((x) => JSON.stringify(x).includes("pricing/discount.py")), "a summary misses the patched file");
    const list = await s.ok("workspace_list", {});
    check(list.count === 3, `workspace_list count ${list.count}`);
    await Promise.all(ids.map((id) => s.ok("workspace_delete", { workspace_id: id })));
    const after = await s.ok("workspace_list", {});
    check(after.count === 0, `after delete: ${after.count} workspaces`);
  },

  // workspace-core: an untrusted archive, network off. What pyro refuses on the host, what
  // the guest can and cannot reach once the archive is unpacked and run inside it.
  async "untrusted-inspection"(s) {
    await s.open(["--allow-root", path.join(work, "inbox")], path.join(work, "scratch"));
    const archive = path.join(work, "inbox/plugin-drop.tar.gz");
    const refused = await s.fails("workspace_create", { seed_path: archive, name: "untrusted" }, "invalid_argument");
    check(/\.\.|symlink|escape|outside/i.test(refused.message), `refusal: ${refused.message}`);
    await s.fails("workspace_create", { seed_path: "/etc", name: "untrusted" }, "invalid_argument");
    check((await s.ok("workspace_list", {})).count === 0, "a refused create left a workspace");
    // The archive as data: seeded as a file, unpacked by the guest's own tar.
    const ws = await s.ok("workspace_create", { environment: ENV, seed_path: path.join(work, "inbox"), name: "untrusted" });
    const id = ws.id;
    const members = await s.ok("workspace_exec", { workspace_id: id, command: "tar -tvzf plugin-drop.tar.gz" });
    check(members.stdout.includes("-> /etc/passwd") && members.stdout.includes("../escape.txt"), `members: ${members.stdout}`);
    const unpack = await s.ok("workspace_exec", {
      workspace_id: id,
      command: "tar -xzf plugin-drop.tar.gz; ls -l plugin-drop; echo ---; ls -A /workspace",
    });
    const top = unpack.stdout.split("---\n")[1] ?? "";
    check(unpack.stderr.includes("contains '..'") && top === "plugin-drop\nplugin-drop.tar.gz\n", `unpack: ${unpack.stdout}${unpack.stderr}`);
    const script = await s.ok("workspace_file_read", { workspace_id: id, path: "plugin-drop/install.sh" });
    check(script.content.includes("203.0.113.7"), "install.sh not read");
    const run = await s.ok("workspace_exec", { workspace_id: id, command: "cd plugin-drop && sh install.sh", timeout_seconds: 60 });
    check(run.stdout.includes("network: lo") && run.stdout.includes("phone home failed"), `install.sh: ${run.stdout}${run.stderr}`);
    const probe = await s.ok("workspace_exec", {
      workspace_id: id,
      command: "ls /sys/class/net; awk '{print $2, $3}' /proc/mounts | grep -v -e '^/proc' -e '^/sys' -e '^/dev'; cat /tmp/plugin-was-here",
    });
    check(probe.stdout.startsWith("lo\n") && probe.stdout.includes("was here"), `probe: ${probe.stdout}`);
    check(!fs.existsSync("/tmp/plugin-was-here"), "the guest's write reached the host's /tmp");
    const diff = await s.ok("workspace_diff", { workspace_id: id });
    check(diff.patch.includes("plugin-drop/install.sh"), `diff: ${diff.patch.slice(0, 400)}`);
    const sum = await s.ok("workspace_summary", { workspace_id: id });
    // The four commands above, the install script's run among the last ones.
    const cmds = sum.commands ?? { count: 0, last: [] };
    check(cmds.count === 4 && cmds.last.some((c) => c.command === "cd plugin-drop && sh install.sh"), `summary commands: ${JSON.stringify(cmds)}`);
    // What comes back to the host is checked there: inside the allowed roots only, and the
    // link to /etc/passwd is left out.
    await s.fails("workspace_export", { workspace_id: id, path: "plugin-drop", output_path: "/root/plugin-drop" }, "invalid_argument");
    const back = await s.ok("workspace_export", { workspace_id: id, path: "plugin-drop", output_path: path.join(work, "inbox/inspected") });
    check((back.skipped ?? []).some((e) => e.path.endsWith("passwd")), `export skipped: ${JSON.stringify(back)}`);
    check(!fs.existsSync(path.join(work, "inbox/inspected/passwd")), "the escaping link was exported");
    await s.ok("workspace_delete", { workspace_id: id });
  },

  // workspace-full: a candidate under review, snapshotted; evaluated in a shell (plain reads,
  // idle waits); a file broken on purpose; reset to the snapshot; rerun; the result exported.
  async "review-eval-workflows"(s) {
    await s.open(["--profile", "workspace-full", "--allow-root", out], project);
    const ws = await s.ok("workspace_create", { environment: ENV, name: "review" });
    const id = ws.id;
    await s.ok("workspace_patch_apply", { workspace_id: id, patch: fixPatch("a") });
    const snap = await s.ok("snapshot_create", { workspace_id: id, name: "candidate" });
    check(snap.name === "candidate", `snapshot: ${JSON.stringify(snap)}`);
    const sh = await s.ok("shell_open", { workspace_id: id, cwd: "/workspace", cols: 120, rows: 40 });
    const shell = sh.shell_id ?? sh.id;
    let cursor = 0;
    await s.ok("shell_write", { workspace_id: id, shell_id: shell, input: `${TESTS} 2>&1; echo "exit=$?"` });
    let r = await shellUntil(s, id, shell, cursor, /exit=(\d+)/, "the first evaluation");
    check(r.m[1] === "0" && /\nOK\b/.test(r.text), `evaluation: ${r.text}`);
    cursor = r.cursor;
    // Break a file, as an experiment gone wrong.
    await s.ok("workspace_file_write", {
      workspace_id: id,
      path: "pricing/discount.py",
      content: discountPy.replace(BUGGY, "    return cents  # discounts off for the benchmark"),
    });
    await s.ok("shell_write", { workspace_id: id, shell_id: shell, input: `${TESTS} 2>&1; echo "exit=$?"` });
    r = await shellUntil(s, id, shell, cursor, /exit=(\d+)/, "the second evaluation");
    check(r.m[1] === "1" && /FAILED \(failures=1\)/.test(r.text), `broken evaluation: ${r.text}`);
    const broken = await s.ok("workspace_diff", { workspace_id: id });
    check(broken.patch.includes("discounts off"), "the diff does not show the break");
    const reset = await s.ok("workspace_reset", { workspace_id: id, snapshot: "candidate" });
    check(reset.state === "running", `after reset: ${reset.state}`);
    const rerun = await s.ok("workspace_exec", { workspace_id: id, command: TESTS });
    check(rerun.exit_code === 0, `rerun after reset: ${rerun.stderr.slice(-600)}`);
    const snaps = await s.ok("snapshot_list", { workspace_id: id });
    check(JSON.stringify(snaps).includes("candidate"), `snapshots: ${JSON.stringify(snaps)}`);
    const sum = await s.ok("workspace_summary", { workspace_id: id });
    check(JSON.stringify(sum).includes("candidate"), "the summary does not say reset to candidate");
    await s.ok("workspace_export", { workspace_id: id, path: "pricing", output_path: path.join(out, "reviewed-pricing") });
    check(fs.readFileSync(path.join(out, "reviewed-pricing/discount.py"), "utf8").includes(FIXES.a), "export is not the candidate");
    await s.ok("workspace_delete", { workspace_id: id });
  },
};

/** Processes (other than ours) whose command line names the private runtime dir. */
function leftovers() {
  const left = [];
  for (const pid of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(pid) || Number(pid) === process.pid) continue;
    try {
      const cmd = fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").replaceAll("\0", " ");
      if (runtimeDir && cmd.includes(runtimeDir)) left.push(`${pid}: ${cmd.slice(0, 160)}`);
    } catch {
      // gone
    }
  }
  const vms = path.join(runtimeDir || "/nonexistent", "vms");
  if (fs.existsSync(vms)) for (const d of fs.readdirSync(vms)) left.push(`VM dir ${d}`);
  return left;
}

let passed = 0;
let failed = 0;
for (const [name, recipe] of Object.entries(recipes)) {
  if (only.length && !only.includes(name)) continue;
  const s = new Session(name);
  const started = Date.now();
  let why = null;
  try {
    await recipe(s);
  } catch (e) {
    why = e?.message ?? String(e);
    await s.cleanup();
  }
  await s.close();
  for (let i = 0; i < 50 && leftovers().length; i++) await sleep(100);
  const left = leftovers();
  if (!why && left.length) why = `left behind: ${left.join("; ")}`;
  const secs = ((Date.now() - started) / 1000).toFixed(1);
  if (why) {
    failed++;
    console.log(`use-case ${name}: FAIL ${secs} s`);
    for (const line of why.split("\n").slice(0, 20)) console.log(`    ${line}`);
  } else {
    passed++;
    console.log(`use-case ${name}: pass ${secs} s`);
  }
}
console.log(`${passed} passed, ${failed} failed: smoke-use-cases`);
process.exit(failed ? 1 : 0);

// pyro review: the page of `pyro ui`. Plain DOM, no framework, nothing loaded from elsewhere.
//
// Everything that comes from a workspace (file names, commands, output, service names) is
// put on the page as text (`el` and `textContent`), never as HTML. Requests use relative
// URLs, so they carry the token in the page's path. Actions are POSTs with JSON and a fresh
// nonce, after a confirmation.
"use strict";

const $ = (sel, root = document) => root.querySelector(sel);

/** An element with attributes (on* never: handlers are given as functions) and children (strings become text). */
function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "on") for (const [ev, f] of Object.entries(v)) e.addEventListener(ev, f);
    else if (k === "class") e.className = v;
    // Inline style attributes are refused by the page's CSP; CSSOM properties are not.
    else if (k === "style") Object.assign(e.style, v);
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

class ApiError extends Error {
  constructor(status, body) {
    const e = (body && body.error) || {};
    super(e.message || `HTTP ${status}`);
    this.status = status;
    this.code = e.code;
    this.hint = e.hint;
  }
}

async function api(path, opts = {}) {
  const r = await fetch(path, opts);
  const text = await r.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch (_) { body = null; }
  if (!r.ok) throw new ApiError(r.status, body);
  return body;
}

/** POST an action with a fresh nonce. */
function act(id, action, fields = {}) {
  const nonce = crypto.randomUUID();
  return api(`api/workspaces/${encodeURIComponent(id)}/actions/${action}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ nonce, ...fields }),
  });
}

function say(text, isError = false) {
  const s = $("#status-line");
  s.textContent = text;
  s.className = isError ? "error" : "";
}

const fmtCount = (n) => Number(n).toLocaleString("en-US");
function fmtBytes(n) {
  if (n == null) return "–";
  const u = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return `${i ? n.toFixed(1) : n} ${u[i]}`;
}
function fmtAge(s) {
  const d = Math.max(0, Math.floor(Date.now() / 1000) - s);
  if (d < 60) return `${d}s`;
  if (d < 3600) return `${Math.floor(d / 60)}m`;
  if (d < 86400) return `${Math.floor(d / 3600)}h`;
  return `${Math.floor(d / 86400)}d`;
}
const fmtTime = (s) => new Date(s * 1000).toLocaleTimeString();
const fmtMs = (ms) => (ms >= 1000 ? `${(ms / 1000).toFixed(1)} s` : `${ms} ms`);
const wsLabel = (w) => w.name || w.id;
const projectOf = (w) => (w.seed ? w.seed.source : "–");

/** Ask before acting: a modal with optional text fields; resolves to the fields or null. */
function confirmBox(title, text, fields = []) {
  const d = $("#confirm");
  $("#confirm-title").textContent = title;
  $("#confirm-text").textContent = text;
  const box = $("#confirm-fields");
  box.replaceChildren(...fields.map((f) => el("label", {}, f.label, el("input", { name: f.name, value: f.value || "", placeholder: f.placeholder || "" }))));
  d.returnValue = "";
  d.showModal();
  return new Promise((resolve) => {
    d.addEventListener("close", () => {
      if (d.returnValue !== "ok") return resolve(null);
      const out = {};
      for (const i of box.querySelectorAll("input")) out[i.name] = i.value;
      resolve(out);
    }, { once: true });
  });
}

// ---- the list of workspaces ----------------------------------------------------------------

let stopPage = () => {};

async function showList() {
  $("#where").textContent = "workspaces";
  const main = $("#main");
  const data = await api("api/workspaces");
  const rows = data.workspaces.map((w) => {
    const changes = el("td", { class: "changes muted" }, w.state === "running" ? "…" : "–");
    const tr = el("tr", { class: "ws", "data-id": w.id, on: { click: () => (location.hash = `#/w/${w.id}`) } },
      el("td", {}, el("a", { href: `#/w/${w.id}` }, wsLabel(w))),
      el("td", {}, el("span", { class: `badge state-${w.state}` }, w.state)),
      el("td", {}, w.environment),
      el("td", { class: "wrap" }, projectOf(w)),
      el("td", {}, fmtAge(w.created_at)),
      el("td", {}, fmtCount(w.command_count)),
      changes);
    return { w, tr, changes };
  });
  main.replaceChildren(
    el("h1", {}, `Workspaces (${data.count})`),
    data.count === 0 ? el("p", { class: "muted" }, "No workspaces. Create one with `pyro workspace create`.") :
      el("table", { id: "ws-list" },
        el("thead", {}, el("tr", {}, ["workspace", "state", "environment", "project", "age", "commands", "changes"].map((h) => el("th", {}, h)))),
        el("tbody", {}, rows.map((r) => r.tr))));
  say("");
  let live = true;
  stopPage = () => { live = false; };
  // Changes need the guest: only running workspaces, one at a time, after the table is up.
  for (const r of rows.filter((r) => r.w.state === "running")) {
    if (!live) return;
    try {
      const d = await api(`api/workspaces/${r.w.id}/diff`);
      r.changes.textContent = d.changed ? `${fmtCount(d.summary.total)} paths` : "none";
      r.changes.className = "changes";
    } catch (e) {
      r.changes.textContent = "?";
      r.changes.title = e.message;
    }
  }
}

// ---- one workspace --------------------------------------------------------------------------

const EXPLAIN = {
  create: (d) => `created from ${d.environment}${d.seed ? `, seeded from ${d.seed.source} (${fmtCount(d.seed.entries)} entries)` : ""}`,
  fork: (d) => `forked from ${d.from}${d.memory ? " with its memory" : ""}`,
  forked: (d) => `fork ${d.to} made${d.paused_ms != null ? ` (paused ${d.paused_ms} ms)` : ""}`,
  exec: (d) => `$ ${d.command}  → exit ${d.exit_code} in ${fmtMs(d.duration_ms)}`,
  file_write: (d) => `wrote ${d.path}${d.bytes != null ? ` (${fmtBytes(d.bytes)})` : ""}`,
  patch_apply: (d) => `applied a patch to ${fmtCount(d.files || 0)} file(s): ${(d.paths || []).slice(0, 5).join(", ")}`,
  sync_push: (d) => `synced ${d.source} into ${d.destination} (${fmtCount(d.entries)} entries, ${fmtBytes(d.bytes)})`,
  export: (d) => `exported ${d.path} to ${d.output} (${fmtCount(d.entries)} entries, ${fmtBytes(d.bytes)})`,
  disk_export: (d) => `disk exported to ${d.output} (${fmtBytes(d.bytes)})`,
  reset: (d) => `reset${d.snapshot ? ` to snapshot ${d.snapshot}` : " to the baseline"}`,
  snapshot_create: (d) => `snapshot ${d.name} taken`,
  snapshot_delete: (d) => `snapshot ${d.name} deleted`,
  snapshot_restore: (d) => `snapshot ${d.name} restored`,
  workspace_stop: (d) => `stopped${d.memory_saved ? " (memory saved)" : ""}`,
  workspace_start: (d) => `started${d.resumed ? " (resumed)" : ""}${d.ms != null ? ` in ${fmtMs(d.ms)}` : ""}`,
  vm_restarted: (d) => `VM restarted: ${d.reason}`,
  service_start: (d) => `service ${d.name} started: ${d.command}`,
  service_ready: (d) => `service ${d.name} ready`,
  service_stop: (d) => `service ${d.name} stopped`,
  service_exit: (d) => `service ${d.name} exited${d.exit_code != null ? ` (${d.exit_code})` : ""}`,
  service_failure: (d) => `service ${d.name} failed`,
  shell_open: (d) => `shell ${d.shell_id} opened in ${d.path}`,
  shell_close: (d) => `shell ${d.shell_id} closed${d.exit_code != null ? ` (exit ${d.exit_code})` : ""}`,
  network_denied: (d) => `network denied: ${d.target}:${d.port} (${d.reason})${d.count > 1 ? ` ×${d.count}` : ""}`,
};

function explain(ev) {
  const f = EXPLAIN[ev.kind];
  try { if (f) return f(ev.detail || {}); } catch (_) { /* fall through */ }
  const s = JSON.stringify(ev.detail || {});
  return s.length > 200 ? `${s.slice(0, 200)}…` : s;
}

function svg(tag, attrs = {}, ...children) {
  const e = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

/** Commands over the session: one bar each, its height the duration (log scale), red when it failed. */
function commandChart(events) {
  const execs = events.filter((e) => e.kind === "exec").slice(-120);
  const W = 360, H = 90;
  const s = svg("svg", { width: W, height: H, id: "chart-commands", role: "img", "aria-label": "command durations" });
  if (!execs.length) { s.append(svg("text", { x: 8, y: H / 2, fill: "#6b6b70" }, "no commands yet")); return s; }
  const max = Math.max(...execs.map((e) => e.detail.duration_ms || 1));
  const bw = Math.min(24, Math.max(2, Math.floor((W - 4) / execs.length) - 1));
  execs.forEach((e, i) => {
    const ms = Math.max(1, e.detail.duration_ms || 1);
    const h = Math.max(2, Math.round((Math.log(ms + 1) / Math.log(max + 1)) * (H - 6)));
    const ok = e.detail.exit_code === 0;
    const r = svg("rect", { x: 2 + i * (bw + 1), y: H - h, width: bw, height: h, fill: ok ? "#3c9a5f" : "#d0453b", class: ok ? "ok" : "fail" });
    r.append(svg("title", {}, `${e.detail.command}\nexit ${e.detail.exit_code}, ${fmtMs(ms)}`));
    s.append(r);
  });
  return s;
}

/** Disk and memory: a bar for now, and a line of what this page has seen since it opened. */
function usageChart(samples) {
  const W = 260, H = 90;
  const s = svg("svg", { width: W, height: H, id: "chart-usage", role: "img", "aria-label": "disk and memory" });
  const last = samples[samples.length - 1];
  if (!last) return s;
  const memFrac = last.memory_bytes != null ? Math.min(1, last.memory_bytes / last.memory_limit_bytes) : 0;
  s.append(svg("text", { x: 0, y: 14, "font-size": 12 }, `memory ${last.memory_bytes != null ? fmtBytes(last.memory_bytes) : "– (not running)"} of ${fmtBytes(last.memory_limit_bytes)}`));
  s.append(svg("rect", { x: 0, y: 20, width: W - 10, height: 8, fill: "#eee" }));
  s.append(svg("rect", { x: 0, y: 20, width: Math.round((W - 10) * memFrac), height: 8, fill: "#2457c5" }));
  s.append(svg("text", { x: 0, y: 48, "font-size": 12 }, `disk ${fmtBytes(last.disk_bytes)} on the host`));
  const pts = samples.slice(-60);
  const dmax = Math.max(...pts.map((p) => p.disk_bytes), 1);
  const line = pts.map((p, i) => `${(i / Math.max(1, pts.length - 1)) * (W - 10)},${H - 4 - (p.disk_bytes / dmax) * 30}`).join(" ");
  s.append(svg("polyline", { points: line, fill: "none", stroke: "#8a5a00", "stroke-width": 1.5 }));
  return s;
}

/** A list that renders only the rows in view: a 20,000-file diff stays responsive. */
class VirtualList {
  constructor(container, render) {
    this.c = container;
    this.render = render;
    this.items = [];
    this.spacer = el("div", { class: "spacer" });
    this.c.replaceChildren(this.spacer);
    this.rowH = 22;
    this.c.addEventListener("scroll", () => this.draw());
  }
  set(items) {
    this.items = items;
    this.spacer.style.height = `${items.length * this.rowH}px`;
    this.draw(true);
  }
  draw(force) {
    const top = this.c.scrollTop, h = this.c.clientHeight || 600;
    const from = Math.max(0, Math.floor(top / this.rowH) - 10);
    const to = Math.min(this.items.length, Math.ceil((top + h) / this.rowH) + 10);
    if (!force && this.from === from && this.to === to) return;
    this.from = from; this.to = to;
    const rows = [];
    for (let i = from; i < to; i++) {
      const r = this.render(this.items[i], i);
      r.style.top = `${i * this.rowH}px`;
      rows.push(r);
    }
    this.spacer.replaceChildren(...rows);
  }
}

const MARK = { added: "+", deleted: "−", modified: "~", type_changed: "≠" };

/** The changes tab: grouped list or tree on the left, a file's hunks (loaded on demand) on the right. */
function changesView(id) {
  const list = el("div", { class: "vlist", id: "diff-list" });
  const hunks = el("div", { id: "hunks" }, el("p", { class: "muted", class: "pad" }, "Pick a file to see its hunks."));
  const head = el("p", { id: "diff-head", class: "muted" }, "Reading the diff…");
  let mode = "grouped", side = false, entries = [], selected = null;
  const open = new Set();
  const vl = new VirtualList(list, (item) => {
    const e = item.entry;
    const label = mode === "tree" ? item.name : e ? e.path : item.name;
    const extra = e && e.files != null ? ` (${fmtCount(e.files)} files, ${fmtBytes(e.bytes)})` : e && e.binary ? " (binary)" : "";
    const dirMark = item.dir ? (open.has(item.path) ? "▾ " : "▸ ") : "";
    const row = el("div", {
      class: `row${selected === item.path ? " sel" : ""}`, "data-path": item.path, title: item.path,
      style: { paddingLeft: `${8 + (item.depth || 0) * 14}px` },
      on: { click: () => pick(item) },
    }, el("span", { class: `st st-${e ? e.status : ""}` }, e ? MARK[e.status] || "?" : ""), dirMark, label, e && e.files != null ? "/" : "", extra);
    return row;
  });

  function treeRows() {
    // Directories from the entries' paths; a collapsed entry is a leaf that expands on demand.
    const root = { children: new Map() };
    for (const e of entries) {
      const parts = e.path.split("/");
      let n = root, path = "";
      parts.forEach((p, i) => {
        path = path ? `${path}/${p}` : p;
        if (!n.children.has(p)) n.children.set(p, { name: p, path, children: new Map() });
        n = n.children.get(p);
        if (i === parts.length - 1) n.entry = e;
      });
    }
    const out = [];
    const walk = (n, depth) => {
      const kids = [...n.children.values()].sort((a, b) => (b.children.size > 0) - (a.children.size > 0) || a.name.localeCompare(b.name));
      for (const k of kids) {
        const dir = k.children.size > 0;
        out.push({ name: k.name, path: k.path, entry: k.entry, depth, dir });
        if (dir && open.has(k.path)) walk(k, depth + 1);
      }
    };
    walk(root, 0);
    return out;
  }
  function redraw() {
    vl.set(mode === "tree" ? treeRows() : entries.map((e) => ({ name: e.path, path: e.path, entry: e })));
  }
  async function pick(item) {
    if (mode === "tree" && item.dir) {
      open.has(item.path) ? open.delete(item.path) : open.add(item.path);
      return redraw();
    }
    const e = item.entry;
    if (!e) return;
    selected = e.path;
    vl.draw(true);
    if (e.files != null) {
      // A collapsed tree: list what it holds, in place.
      say(`listing ${e.path}/…`);
      try {
        const d = await api(`api/workspaces/${id}/diff?path=${encodeURIComponent(e.path)}`);
        const at = entries.indexOf(e);
        const inner = d.entries.filter((x) => x.path !== e.path);
        entries.splice(at, 1, ...inner);
        head.textContent = `${head.textContent.split(" · ")[0]} · expanded ${e.path}/`;
        redraw();
        say("");
      } catch (err) { say(err.message, true); }
      return;
    }
    if (e.artifact_type === "dir") return;
    hunks.replaceChildren(el("p", { class: "muted", class: "pad" }, `Loading ${e.path}…`));
    try {
      const d = await api(`api/workspaces/${id}/hunks?path=${encodeURIComponent(e.path)}`);
      showHunks(e, d);
    } catch (err) { hunks.replaceChildren(el("p", { class: "error", class: "pad" }, err.message)); }
  }
  function showHunks(e, d) {
    const title = el("div", { class: "file" }, el("span", { class: `st-${e.status}` }, `${e.status} `), e.path);
    const entry = d.entries.find((x) => x.path === e.path);
    if (!d.patch) {
      const why = entry && entry.binary ? "binary or too large to show (export it to look)" : e.artifact_type !== "file" ? `a ${e.artifact_type}` : "no text change";
      return hunks.replaceChildren(title, el("p", { class: "muted", class: "pad" }, why));
    }
    hunks.replaceChildren(title, side ? sideBySide(d.patch) : unified(d.patch));
    if (d.patch_truncated) hunks.append(el("p", { class: "muted", class: "pad" }, "The patch was cut at its cap; export the file to see all of it."));
  }
  function unified(patch) {
    const t = el("table", { class: "dl unified" });
    let o = 0, n = 0, inHunk = false;
    for (const line of patch.split("\n")) {
      // File headers (diff --git, index, ---/+++) come before the first hunk; the title shows the file.
      if (line.startsWith("@@")) inHunk = true;
      if (!inHunk || line === "") continue;
      const m = /^@@ -(\d+)(?:,\d+)? \+(\d+)/.exec(line);
      if (m) { o = +m[1]; n = +m[2]; t.append(el("tr", { class: "hh" }, el("td", { colspan: 3 }, line))); continue; }
      const c = line[0];
      if (c === "+") t.append(el("tr", { class: "add" }, el("td", { class: "n" }), el("td", { class: "n" }, n++), el("td", { class: "t" }, line)));
      else if (c === "-") t.append(el("tr", { class: "del" }, el("td", { class: "n" }, o++), el("td", { class: "n" }), el("td", { class: "t" }, line)));
      else t.append(el("tr", {}, el("td", { class: "n" }, o++), el("td", { class: "n" }, n++), el("td", { class: "t" }, line)));
    }
    return t;
  }
  function sideBySide(patch) {
    const t = el("table", { class: "dl side" });
    let o = 0, n = 0, dels = [], adds = [], inHunk = false;
    const flush = () => {
      for (let i = 0; i < Math.max(dels.length, adds.length); i++) {
        const d = dels[i], a = adds[i];
        t.append(el("tr", {},
          el("td", { class: "n" }, d ? d[0] : ""), el("td", { class: `t${d ? " del" : ""}` }, d ? d[1] : ""),
          el("td", { class: "n" }, a ? a[0] : ""), el("td", { class: `t${a ? " add" : ""}` }, a ? a[1] : "")));
      }
      dels = []; adds = [];
    };
    for (const line of patch.split("\n")) {
      if (line.startsWith("@@")) inHunk = true;
      if (!inHunk || line === "") continue;
      const m = /^@@ -(\d+)(?:,\d+)? \+(\d+)/.exec(line);
      if (m) { flush(); o = +m[1]; n = +m[2]; t.append(el("tr", { class: "hh" }, el("td", { colspan: 4 }, line))); continue; }
      const c = line[0], text = line.slice(1);
      if (c === "-") dels.push([o++, text]);
      else if (c === "+") adds.push([n++, text]);
      else { flush(); t.append(el("tr", {}, el("td", { class: "n" }, o++), el("td", { class: "t" }, text), el("td", { class: "n" }, n++), el("td", { class: "t" }, text))); }
    }
    flush();
    return t;
  }
  async function load() {
    head.textContent = "Reading the diff…";
    const t0 = performance.now();
    const d = await api(`api/workspaces/${id}/diff`);
    entries = d.entries;
    const s = d.summary;
    head.textContent = d.changed
      ? `${fmtCount(s.total)} paths changed: ${fmtCount(s.modified)} modified, ${fmtCount(s.added)} added, ${fmtCount(s.deleted)} deleted${s.type_changed ? `, ${fmtCount(s.type_changed)} type changed` : ""}${d.entries_omitted ? ` (${fmtCount(d.entries_omitted)} more not listed)` : ""}`
      : "No changes against the baseline.";
    redraw();
    list.dataset.loadedMs = String(Math.round(performance.now() - t0));
    list.dataset.count = String(entries.length);
  }
  const modeBtn = el("button", { id: "diff-mode", on: { click: () => { mode = mode === "tree" ? "grouped" : "tree"; modeBtn.textContent = mode === "tree" ? "Grouped list" : "File tree"; redraw(); } } }, "File tree");
  const sideBtn = el("button", { id: "diff-side", on: { click: () => { side = !side; sideBtn.textContent = side ? "Unified" : "Side by side"; const e = entries.find((x) => x.path === selected); if (e) pick({ entry: e, path: e.path }); } } }, "Side by side");
  const view = el("section", { id: "changes" },
    el("div", { class: "actions" }, modeBtn, sideBtn, el("button", { on: { click: () => load().catch((e) => say(e.message, true)) } }, "Refresh")),
    head, el("div", { class: "split" }, list, hunks));
  return { view, load };
}

/** The live tab: each service's log and each open shell's output, as server-sent events. */
function liveView(id) {
  const view = el("section", { id: "live" }, el("p", { class: "muted" }, "Loading services and shells…"));
  const sources = [];
  function watch(url, title, onEvent) {
    const pre = el("pre", { class: "live" });
    const box = el("div", { class: "stream" }, el("h3", {}, title), pre);
    const es = new EventSource(url);
    sources.push(es);
    const append = (text, cls) => {
      pre.append(cls ? el("span", { class: cls }, text) : document.createTextNode(text));
      // Keep the page bounded while a service floods: drop the oldest text.
      while (pre.textContent.length > 200000 && pre.firstChild) pre.firstChild.remove();
      pre.scrollTop = pre.scrollHeight;
    };
    onEvent(es, append);
    es.addEventListener("failed", (m) => { const e = JSON.parse(m.data).error || {}; append(`\n[${e.message || "stream ended"}]\n`, "skip"); es.close(); });
    return box;
  }
  async function load() {
    const [svc, sh] = await Promise.all([api(`api/workspaces/${id}/services`), api(`api/workspaces/${id}/shells`)]);
    const boxes = [];
    for (const s of svc.services || []) {
      boxes.push(watch(`api/workspaces/${id}/services/${encodeURIComponent(s.name)}/live`, `service ${s.name} (${s.state})`, (es, append) => {
        es.addEventListener("log", (m) => {
          const d = JSON.parse(m.data);
          if (d.skipped) append(`[… ${fmtBytes(d.skipped)} skipped …]\n`, "skip");
          if (d.stdout) append(d.stdout);
          if (d.stderr) append(d.stderr);
        });
      }));
    }
    for (const s of sh.shells || []) {
      boxes.push(watch(`api/workspaces/${id}/shells/${encodeURIComponent(s.shell_id)}/live`, `shell ${s.shell_id} (${s.cwd})`, (es, append) => {
        es.addEventListener("output", (m) => { const d = JSON.parse(m.data); if (d.dropped) append(`[… ${fmtBytes(d.dropped)} dropped …]\n`, "skip"); append(d.text); });
        es.addEventListener("exit", (m) => { append(`\n[shell exited ${JSON.parse(m.data).exit_code}]\n`, "skip"); es.close(); });
      }));
    }
    view.replaceChildren(...(boxes.length ? boxes : [el("p", { class: "muted" }, "No services or open shells.")]));
  }
  const stop = () => sources.forEach((s) => s.close());
  return { view, load, stop };
}

async function showWorkspace(id) {
  const main = $("#main");
  let info = await api(`api/workspaces/${id}`);
  let live = true;
  const samples = [];
  const banner = el("div", { id: "banner" });
  const meta = el("div", { class: "meta", id: "ws-meta" });
  const charts = el("div", { class: "charts" });
  const timeline = el("ol", { class: "timeline", id: "timeline" });
  const changes = changesView(info.id);
  const liveTab = liveView(info.id);
  const tabs = { timeline: el("section", { id: "timeline-tab" }, timeline), changes: changes.view, live: liveTab.view };
  const loaded = new Set();
  const tabBar = el("div", { class: "tabs" });
  const body = el("div", { id: "tab-body" });
  function showTab(name) {
    for (const b of tabBar.children) b.classList.toggle("on", b.dataset.tab === name);
    body.replaceChildren(tabs[name]);
    if (!loaded.has(name)) {
      loaded.add(name);
      if (name === "changes") changes.load().catch((e) => say(e.message, true));
      if (name === "live") liveTab.load().catch((e) => say(e.message, true));
    }
  }
  for (const name of Object.keys(tabs)) tabBar.append(el("button", { "data-tab": name, id: `tab-${name}`, on: { click: () => showTab(name) } }, name[0].toUpperCase() + name.slice(1)));

  const actions = el("div", { class: "actions", id: "ws-actions" });
  function renderMeta() {
    $("#where").textContent = wsLabel(info);
    meta.replaceChildren(
      el("span", {}, "state ", el("b", { class: `badge state-${info.state}`, id: "ws-state" }, info.state)),
      el("span", {}, "environment ", el("b", {}, info.environment)),
      el("span", {}, "project ", el("b", {}, projectOf(info))),
      el("span", {}, "age ", el("b", {}, fmtAge(info.created_at))),
      el("span", {}, "commands ", el("b", {}, fmtCount(info.command_count))),
      el("span", {}, "resets ", el("b", {}, fmtCount(info.reset_count))),
      el("span", { class: "muted" }, info.id));
    const running = info.state === "running";
    actions.replaceChildren(
      el("a", { class: "button", id: "act-patch", href: `api/workspaces/${info.id}/patch`, download: `pyro-${info.id}.patch` }, "Download patch"),
      el("button", { id: "act-export", on: { click: doExport } }, "Export…"),
      el("button", { id: "act-snapshot", on: { click: doSnapshot } }, "Snapshot…"),
      el("button", { id: "act-reset", class: "danger", on: { click: doReset } }, "Reset…"),
      running ? el("button", { id: "act-stop", on: { click: () => simple("stop", "Stop this workspace?", "Its VM stops; its disk and memory are kept until it starts again.") } }, "Stop")
        : el("button", { id: "act-start", on: { click: () => simple("start", "Start this workspace?", "Its VM boots again.") } }, "Start"),
      el("button", { id: "act-delete", class: "danger", on: { click: doDelete } }, "Delete…"));
  }
  async function run(action, fields, done) {
    say(`${action}…`);
    for (const b of actions.querySelectorAll("button")) b.disabled = true;
    try {
      const r = await act(info.id, action, fields);
      say(done(r));
    } catch (e) {
      say(`${action} failed: ${e.message}${e.hint ? ` (${e.hint})` : ""}`, true);
    }
    await refresh();
  }
  async function simple(action, title, text) {
    if (await confirmBox(title, text)) await run(action, {}, () => `${action} done`);
  }
  async function doExport() {
    const f = await confirmBox("Export to the project", "Copies a path of the workspace to a new directory inside the project (it must not exist).",
      [{ name: "path", label: "Path in the workspace", value: "/workspace" }, { name: "dest", label: "New directory (relative to the project; its parent must exist)", placeholder: "review-attempt-1" }]);
    if (f) await run("export", f, (r) => `exported to ${r.output || f.dest}`);
  }
  async function doSnapshot() {
    const f = await confirmBox("Take a snapshot", "Saves the workspace's files under a name; reset can return to it.", [{ name: "name", label: "Name", placeholder: "before-refactor" }]);
    if (f) await run("snapshot", f, () => `snapshot ${f.name} taken`);
  }
  async function doReset() {
    let names = [];
    try { names = ((await api(`api/workspaces/${info.id}/snapshots`)).snapshots || []).map((s) => s.name); } catch (_) { /* none */ }
    const f = await confirmBox("Reset this workspace?", `Every change since the baseline${names.length ? " (or the snapshot named)" : ""} is lost; the VM restarts.${names.length ? ` Snapshots: ${names.join(", ")}` : ""}`,
      names.length ? [{ name: "snapshot", label: "Snapshot (empty: the baseline)", value: "" }] : []);
    if (f) {
      const fields = f.snapshot ? { snapshot: f.snapshot } : {};
      await run("reset", fields, () => "reset done");
      loaded.delete("changes");
    }
  }
  async function doDelete() {
    if (!(await confirmBox("Delete this workspace?", `${wsLabel(info)} and everything in it go for good. Export first what you want to keep.`))) return;
    say("deleting…");
    try {
      await act(info.id, "delete");
      say("deleted");
      location.hash = "#/";
    } catch (e) { say(`delete failed: ${e.message}`, true); }
  }
  async function refresh() {
    try {
      const [i, t, u] = await Promise.all([api(`api/workspaces/${id}`), api(`api/workspaces/${id}/timeline`), api(`api/workspaces/${id}/usage`)]);
      info = i;
      renderMeta();
      samples.push(u);
      renderTimeline(t);
      charts.replaceChildren(
        el("div", { class: "chart" }, el("h3", {}, "commands: duration (log scale), red = failed"), commandChart(t.events)),
        el("div", { class: "chart" }, el("h3", {}, "host usage"), usageChart(samples)));
    } catch (e) {
      if (e.status === 404) {
        live = false;
        banner.replaceChildren(el("div", { class: "banner", id: "gone" }, "This workspace no longer exists (deleted). ", el("a", { href: "#/" }, "Back to the list")));
        for (const b of actions.querySelectorAll("button")) b.disabled = true;
        liveTab.stop();
      } else say(e.message, true);
    }
  }
  function renderTimeline(t) {
    const items = t.events.slice().reverse().map((ev) => {
      const fail = ev.kind === "exec" && ev.detail.exit_code !== 0;
      return el("li", { class: fail ? "fail" : "", "data-kind": ev.kind },
        el("span", { class: "muted" }, fmtTime(ev.recorded_at)), el("span", { class: "kind" }, ev.kind), el("span", { class: "what" }, explain(ev)));
    });
    const rolled = Object.entries(t.rolled_up || {});
    if (rolled.length) items.push(el("li", {}, el("span", {}), el("span", { class: "kind" }, "older"), el("span", { class: "what muted" }, rolled.map(([k, n]) => `${n} ${k}`).join(", "))));
    timeline.replaceChildren(...(items.length ? items : [el("li", {}, el("span", {}), el("span", {}), el("span", { class: "muted" }, "Nothing recorded since the last reset."))]));
  }
  main.replaceChildren(banner, el("h1", {}, wsLabel(info)), meta, actions, charts, tabBar, body);
  renderMeta();
  showTab("timeline");
  await refresh();
  say("");
  const timer = setInterval(() => { if (live) refresh(); }, 5000);
  stopPage = () => { live = false; clearInterval(timer); liveTab.stop(); };
}

async function route() {
  stopPage();
  stopPage = () => {};
  const m = /^#\/w\/([^/]+)/.exec(location.hash);
  try {
    if (m) await showWorkspace(decodeURIComponent(m[1]));
    else await showList();
  } catch (e) {
    $("#main").replaceChildren(el("p", { class: "error" }, e.message), el("a", { href: "#/" }, "Back to the list"));
  }
}

window.addEventListener("hashchange", route);
route();

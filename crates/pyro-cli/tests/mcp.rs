//! `pyro mcp serve` driven by a real MCP client (rmcp's client over the child's stdio):
//! initialize and tools/list per profile, the repro-fix loop through tool calls against real
//! VMs, project detection (git work tree, --project-path, --repo-url), host-path confinement,
//! and tool errors with stable codes.

use crate::common;
use crate::common::*;
use rmcp::model::{CallToolRequestParams, CallToolResult, ProgressNotificationParam, Tool};
use rmcp::service::{NotificationContext, RunningService};
use rmcp::transport::TokioChildProcess;
use rmcp::{ClientHandler, RoleClient, ServiceExt};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command as Proc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Records the progress notifications the server sends.
#[derive(Clone, Default)]
struct Recorder {
    progress: Arc<Mutex<Vec<String>>>,
}

impl ClientHandler for Recorder {
    async fn on_progress(&self, p: ProgressNotificationParam, _: NotificationContext<RoleClient>) {
        self.progress.lock().unwrap().push(p.message.unwrap_or_default());
    }
}

/// Private runtime and data dirs for one test.
struct TestEnv {
    t: Env,
    data: tempfile::TempDir,
}

impl TestEnv {
    fn new() -> TestEnv {
        TestEnv { t: Env::new(), data: tempfile::tempdir().unwrap() }
    }

    async fn serve(&self, args: &[&str], cwd: &Path) -> Server {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_pyro"));
        cmd.args(["mcp", "serve"])
            .args(args)
            .current_dir(cwd)
            .env("PYRO_RUNTIME_DIR", self.t.runtime.path())
            .env("PYRO_DATA_DIR", self.data.path())
            .env_remove("PYRO_ACCEL");
        let (transport, _) =
            TokioChildProcess::builder(cmd).stderr(std::process::Stdio::null()).spawn().expect("spawn pyro mcp serve");
        let pid = transport.id().unwrap();
        let rec = Recorder::default();
        let client = rec.clone().serve(transport).await.expect("initialize");
        Server { client, progress: rec.progress, pid }
    }
}

struct Server {
    client: RunningService<RoleClient, Recorder>,
    progress: Arc<Mutex<Vec<String>>>,
    pid: u32,
}

impl Server {
    fn instructions(&self) -> String {
        self.client.peer_info().and_then(|i| i.instructions.clone()).unwrap_or_default()
    }

    async fn call(&self, tool: &str, args: Value) -> CallToolResult {
        let Value::Object(args) = args else { panic!("arguments must be an object") };
        self.client
            .call_tool(CallToolRequestParams::new(tool.to_string()).with_arguments(args))
            .await
            .unwrap_or_else(|e| panic!("{tool}: {e}"))
    }

    /// A successful call's structured content (its text content is checked to be there).
    async fn ok(&self, tool: &str, args: Value) -> Value {
        let r = self.call(tool, args).await;
        let v = r.structured_content.clone().unwrap_or(Value::Null);
        assert_ne!(r.is_error, Some(true), "{tool} failed: {v}");
        assert!(r.content.first().and_then(|c| c.as_text()).is_some(), "{tool}: no text content");
        v
    }

    /// A failed call's `error` object; the text content carries the message.
    async fn err(&self, tool: &str, args: Value) -> Value {
        let r = self.call(tool, args).await;
        let v = r.structured_content.clone().unwrap_or(Value::Null);
        assert_eq!(r.is_error, Some(true), "{tool} should fail: {v}");
        let text = r.content.first().and_then(|c| c.as_text()).map(|t| t.text.clone()).unwrap_or_default();
        let msg = v["error"]["message"].as_str().unwrap_or("no message").to_string();
        assert!(text.contains(&msg), "text {text:?} lacks {msg:?}");
        v["error"].clone()
    }

    async fn stop(self) {
        let _ = self.client.cancel().await;
        // The server exits once its stdin closes.
        let deadline = Instant::now() + Duration::from_secs(10);
        while Path::new(&format!("/proc/{}", self.pid)).exists() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn git(dir: &Path, args: &[&str]) {
    let o = Proc::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.email=t@t", "-c", "user.name=t", "-c", "init.defaultBranch=main"])
        .args(args)
        .output()
        .unwrap();
    assert!(o.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&o.stderr));
}

/// A tiny repo whose test fails: `./test.sh` checks that add.sh adds.
fn repro_repo() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    std::fs::write(p.join("add.sh"), "#!/bin/sh\necho $(($1 - $2))\n").unwrap();
    std::fs::write(
        p.join("test.sh"),
        "#!/bin/sh\nset -e\n[ \"$(sh add.sh 2 3)\" = 5 ] && echo PASS || { echo FAIL; exit 1; }\n",
    )
    .unwrap();
    std::fs::create_dir(p.join("src")).unwrap();
    std::fs::write(p.join("src/README"), "calc\n").unwrap();
    git(p, &["init", "-q"]);
    git(p, &["add", "."]);
    git(p, &["commit", "-qm", "init"]);
    d
}

const FIX: &str = "diff --git a/add.sh b/add.sh
--- a/add.sh
+++ b/add.sh
@@ -1,2 +1,2 @@
 #!/bin/sh
-echo $(($1 - $2))
+echo $(($1 + $2))
diff --git a/NOTES.md b/NOTES.md
new file mode 100644
--- /dev/null
+++ b/NOTES.md
@@ -0,0 +1 @@
+fixed the sign
";

fn names(tools: &[Tool]) -> Vec<String> {
    tools.iter().map(|t| t.name.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initialize_and_tools_list_per_profile() {
    let e = TestEnv::new();
    let nowhere = tempfile::tempdir().unwrap();
    // Starting touches no runtime: an empty cache stays without kernel or environments.
    let cache = tempfile::tempdir().unwrap();
    // The tool names per profile are pinned once, in docs/contract.pin.
    let pin = common::contract::Pin::load();
    let profiles: Vec<&str> = pin.mcp.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(profiles, ["vm-run", "workspace-core", "workspace-full"]);
    for profile in profiles {
        let want = pin.tools(profile);
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_pyro"));
        cmd.args(["mcp", "serve", "--profile", profile])
            .current_dir(nowhere.path())
            .env("PYRO_RUNTIME_DIR", e.t.runtime.path())
            .env("PYRO_DATA_DIR", e.data.path())
            .env("PYRO_CACHE_DIR", cache.path());
        let (transport, _) = TokioChildProcess::builder(cmd).stderr(std::process::Stdio::null()).spawn().unwrap();
        let client = Recorder::default().serve(transport).await.expect("initialize");
        let info = client.peer_info().expect("server info");
        assert_eq!(info.server_info.as_ref().unwrap().name, "pyro-mcp");
        assert_eq!(info.server_info.as_ref().unwrap().version, env!("CARGO_PKG_VERSION"));
        let instructions = info.instructions.clone().unwrap_or_default();
        let tools = client.list_all_tools().await.unwrap();
        assert_eq!(names(&tools), want, "{profile}");
        let size = serde_json::to_vec(&json!({ "tools": tools })).unwrap().len();
        println!("{profile}: {} tools, tools/list {size} bytes", tools.len());
        for t in &tools {
            let a = t.annotations.as_ref().unwrap_or_else(|| panic!("{} has no annotations", t.name));
            assert_eq!(a.open_world_hint, None, "{}", t.name);
            assert!(a.read_only_hint == Some(true) || a.destructive_hint.is_some(), "{}", t.name);
            assert!(t.description.as_ref().unwrap().len() <= 80, "{}", t.name);
        }
        let run = &tools[0];
        // A chat host's call is bounded by the timeouts `pyro host` writes (an hour plus margin).
        assert_eq!(run.input_schema["properties"]["timeout_seconds"]["maximum"], 3600);
        assert!(instructions.chars().count() < 2048, "{profile}: {} characters", instructions.chars().count());
        // Titles for the hosts' tool rows, except in workspace-full: its 37 tools fit the
        // 12 KiB budget only without them.
        for t in &tools {
            if profile == "workspace-full" {
                assert_eq!(t.title, None, "{}", t.name);
            } else {
                assert!(t.title.as_ref().is_some_and(|x| !x.is_empty()), "{} has no title", t.name);
            }
        }
        assert_eq!(run.input_schema["properties"]["vcpu_count"]["maximum"], 16);
        assert!(run.output_schema.is_some());
        if profile == "vm-run" {
            assert!(instructions.contains("vm_run"), "{instructions}");
        } else {
            // workspace-core (the default) within 6 KiB; workspace-full, with its 20 more
            // tools and the create, exec and reset extras, within 12 KiB.
            let budget = if profile == "workspace-core" { 6144 } else { 12288 };
            assert!(size <= budget, "{profile} tools/list is {size} bytes (budget {budget})");
            let create = tools.iter().find(|t| t.name == "workspace_create").unwrap();
            let offers_network = create.input_schema["properties"].get("network_policy").is_some();
            assert_eq!(offers_network, profile == "workspace-full", "{profile}: only workspace-full offers networking");
            let offers_secrets = create.input_schema["properties"].get("secrets").is_some();
            assert_eq!(offers_secrets, profile == "workspace-full", "{profile}: only workspace-full offers secrets");
            let exec = tools.iter().find(|t| t.name == "workspace_exec").unwrap();
            let secret_env = exec.input_schema["properties"].get("secret_env").is_some();
            assert_eq!(secret_env, profile == "workspace-full", "{profile}: only workspace-full offers secret_env");
            for step in ["workspace_create", "workspace_patch_apply", "workspace_exec", "workspace_summary"] {
                assert!(instructions.contains(step), "{instructions}");
            }
            assert!(instructions.contains("Project source: none"), "{instructions}");
            assert!(instructions.contains("Host paths are refused"), "{instructions}");
            let read = tools.iter().find(|t| t.name == "workspace_file_read").unwrap();
            assert_eq!(read.input_schema["properties"]["max_bytes"]["maximum"], 65536);
            assert_eq!(read.meta.as_ref().unwrap().get("anthropic/maxResultSizeChars"), Some(&json!(200_000)));
            assert_eq!(read.annotations.as_ref().unwrap().read_only_hint, Some(true));
            let del = tools.iter().find(|t| t.name == "workspace_delete").unwrap();
            assert_eq!(del.annotations.as_ref().unwrap().destructive_hint, Some(true));
        }
        let _ = client.cancel().await;
    }
    let left: Vec<_> = std::fs::read_dir(cache.path()).unwrap().flatten().map(|e| e.file_name()).collect();
    assert!(left.is_empty(), "serving must not prepare the runtime: {left:?}");
    // A bad profile is a usage error.
    let o = Proc::new(env!("CARGO_BIN_EXE_pyro")).args(["mcp", "serve", "--profile", "nope"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repro_fix_loop_through_tool_calls() {
    let e = TestEnv::new();
    let repo = repro_repo();
    let out = tempfile::tempdir().unwrap();
    let nowhere = tempfile::tempdir().unwrap();
    let s = e
        .serve(
            &["--project-path", repo.path().to_str().unwrap(), "--allow-root", out.path().to_str().unwrap()],
            nowhere.path(),
        )
        .await;
    let root = repo.path().canonicalize().unwrap();
    assert!(s.instructions().contains(&format!("the project at {}", root.display())), "{}", s.instructions());

    // Create without seed_path: seeded from the project, with progress notifications.
    let w = s.ok("workspace_create", json!({"name": "repro"})).await;
    let id = w["id"].as_str().unwrap().to_string();
    assert_eq!(w["seed_source"], json!({"kind": "project", "path": root}));
    assert_eq!(w["seed"]["kind"], "git_checkout");
    assert_eq!(w["state"], "running");
    let progress = s.progress.lock().unwrap().clone();
    assert!(progress.iter().any(|l| l.contains("booting")), "{progress:?}");

    let r = s.ok("workspace_file_read", json!({"workspace_id": "repro", "path": "add.sh"})).await;
    assert_eq!(r["content"], "#!/bin/sh\necho $(($1 - $2))\n");
    // A failing command is a result, not a tool error.
    let x = s.ok("workspace_exec", json!({"workspace_id": id, "command": "sh test.sh"})).await;
    assert_eq!(x["exit_code"], 1);
    assert_eq!(x["stdout"], "FAIL\n");
    let p = s.ok("workspace_patch_apply", json!({"workspace_id": id, "patch": FIX})).await;
    assert_eq!(p["summary"]["modified"], 1);
    assert_eq!(p["summary"]["added"], 1);
    let x = s.ok("workspace_exec", json!({"workspace_id": id, "command": "sh test.sh", "timeout_seconds": 60})).await;
    assert_eq!(x["exit_code"], 0, "{x}");
    assert_eq!(x["stdout"], "PASS\n");
    // Output is capped at 24 KiB per stream, head and tail kept; the text is a brief.
    let r = s.call("workspace_exec", json!({"workspace_id": id, "command": "seq 1 100000"})).await;
    let big = r.structured_content.clone().unwrap();
    assert_eq!(big["stdout_truncated"], true);
    let so = big["stdout"].as_str().unwrap();
    assert!(so.len() <= 25 * 1024 && so.starts_with("1\n2\n") && so.ends_with("100000\n"), "{}", so.len());
    let text = r.content[0].as_text().unwrap().text.clone();
    assert!(text.contains("(truncated)") && !text.contains("99999"), "{text}");

    let d = s.ok("workspace_diff", json!({"workspace_id": id})).await;
    assert_eq!(d["summary"]["total"], 2, "{d}");
    let patch = d["patch"].as_str().unwrap();
    assert!(patch.contains("-echo $(($1 - $2))\n+echo $(($1 + $2))"), "{patch}");

    // Export into the allowed root, and into the project by a relative path.
    let f = out.path().join("add.sh");
    let x = s.ok("workspace_export", json!({"workspace_id": id, "path": "add.sh", "output_path": f})).await;
    assert_eq!(x["artifact_type"], "file");
    assert_eq!(std::fs::read_to_string(&f).unwrap(), "#!/bin/sh\necho $(($1 + $2))\n");
    s.ok("workspace_export", json!({"workspace_id": id, "path": "NOTES.md", "output_path": "NOTES.md"})).await;
    assert_eq!(std::fs::read_to_string(repo.path().join("NOTES.md")).unwrap(), "fixed the sign\n");
    let c = s.err("workspace_export", json!({"workspace_id": id, "path": "add.sh", "output_path": f})).await;
    assert_eq!(c["code"], "conflict");

    let sum = s.ok("workspace_summary", json!({"workspace_id": id})).await;
    assert_eq!(sum["commands"]["count"], 3, "{sum}");
    assert_eq!(sum["commands"]["failures"], 1, "{sum}");
    let logs = s.ok("workspace_logs", json!({"workspace_id": id})).await;
    assert_eq!(logs["count"], 3);
    let l = s.ok("workspace_list", json!({})).await;
    assert_eq!(l["count"], 1);
    let del = s.ok("workspace_delete", json!({"workspace_id": id})).await;
    assert_eq!(del["deleted"], true);
    let nf = s.err("workspace_status", json!({"workspace_id": id})).await;
    assert_eq!(nf["code"], "not_found");
    s.stop().await;
    e.t.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workspace_full_secrets_and_secret_env() {
    let e = TestEnv::new();
    let project = tempfile::tempdir().unwrap();
    std::fs::write(project.path().join("README"), "x\n").unwrap();
    let keys = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let literal = format!("mcp-lit-secret-{}", std::process::id());
    let from_file = format!("mcp-file-secret-{}", std::process::id());
    std::fs::write(keys.path().join("key"), format!("{from_file}\n")).unwrap();
    std::fs::write(outside.path().join("key"), "outside-secret\n").unwrap();
    let nowhere = tempfile::tempdir().unwrap();
    let (p, k) = (project.path().to_str().unwrap(), keys.path().to_str().unwrap());
    let s = e.serve(&["--profile", "workspace-full", "--project-path", p, "--allow-root", k], nowhere.path()).await;
    let no_leak = |v: &Value| {
        let t = v.to_string();
        assert!(!t.contains(&literal) && !t.contains(&from_file), "a secret's value in {t}");
    };

    // A file outside the roots, or a secret with both sources: refused, nothing created.
    let out = outside.path().join("key");
    let x = s.err("workspace_create", json!({"secrets": [{"name": "K", "file_path": out}]})).await;
    assert_eq!(x["code"], "invalid_argument", "{x}");
    let both = json!({"secrets": [{"name": "K", "value": literal, "file_path": "x"}]});
    let x = s.err("workspace_create", both).await;
    no_leak(&x);
    let x = s.err("workspace_create", json!({"secrets": literal})).await;
    no_leak(&x);
    assert_eq!(s.ok("workspace_list", json!({})).await["count"], 0);

    let w = s
        .ok(
            "workspace_create",
            json!({"secrets": [{"name": "TOKEN", "value": literal}, {"name": "KEY", "file_path": keys.path().join("key")}]}),
        )
        .await;
    no_leak(&w);
    assert_eq!(w["secrets"], json!([{"name": "TOKEN", "source": "literal"}, {"name": "KEY", "source": "file"}]));
    let id = w["id"].as_str().unwrap().to_string();
    let cmd = "echo $TOKEN; echo $GH; [ \"${#GH}\" -gt 10 ]";
    let x = s
        .ok("workspace_exec", json!({"workspace_id": id, "command": cmd, "secret_env": {"TOKEN": "", "KEY": "GH"}}))
        .await;
    assert_eq!(x["exit_code"], 0, "{x}");
    assert_eq!(x["stdout"], "[secret:TOKEN]\n[secret:KEY]\n");
    let x = s.err("workspace_exec", json!({"workspace_id": id, "command": "true", "secret_env": {"NOPE": "X"}})).await;
    assert_eq!(x["code"], "not_found");
    for tool in ["workspace_logs", "workspace_summary", "workspace_status"] {
        no_leak(&s.ok(tool, json!({"workspace_id": id})).await);
    }
    let sum = s.ok("workspace_summary", json!({"workspace_id": id})).await;
    assert_eq!(sum["secrets"]["used"], json!(["KEY", "TOKEN"])); // secret_env is a map: by name
    let progress = s.progress.lock().unwrap().clone();
    assert!(!progress.iter().any(|l| l.contains(&literal) || l.contains(&from_file)), "{progress:?}");
    s.ok("workspace_delete", json!({"workspace_id": id})).await;
    s.stop().await;

    // workspace-core has no secrets at all.
    let s = e.serve(&["--project-path", p], nowhere.path()).await;
    let x = s.err("workspace_create", json!({"secrets": [{"name": "T", "value": "abcdef"}]})).await;
    assert!(x["message"].as_str().unwrap().contains("unknown field `secrets`"), "{x}");
    s.stop().await;
    e.t.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn git_work_tree_detected_and_slow_exec_does_not_block_others() {
    let e = TestEnv::new();
    let repo = repro_repo();
    // Started in a sub-directory of a checkout: the project is the work tree's top.
    let s = e.serve(&[], &repo.path().join("src")).await;
    let root = repo.path().canonicalize().unwrap();
    assert!(s.instructions().contains(&format!("the project at {}", root.display())), "{}", s.instructions());
    let a = s.ok("workspace_create", json!({})).await;
    assert_eq!(a["seed_source"]["kind"], "project");
    let b = s.ok("workspace_create", json!({"seed_path": "src"})).await;
    assert_eq!(b["seed_source"], json!({"kind": "explicit", "path": root.join("src")}));
    let (a, b) = (a["id"].as_str().unwrap().to_string(), b["id"].as_str().unwrap().to_string());

    // A slow exec in one workspace; calls on the other return meanwhile.
    let started = Instant::now();
    let slow = s.call("workspace_exec", json!({"workspace_id": a, "command": "sleep 10; echo slept"}));
    let others = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let x = s.ok("workspace_exec", json!({"workspace_id": b, "command": "cat README"})).await;
        let l = s.ok("workspace_list", json!({})).await;
        (x, l, started.elapsed())
    };
    let (slow, (x, l, fast_done)) = tokio::join!(slow, others);
    assert_eq!(slow.structured_content.unwrap()["stdout"], "slept\n");
    assert_eq!(x["stdout"], "calc\n");
    assert_eq!(l["count"], 2);
    assert!(fast_done < Duration::from_secs(8), "blocked by the slow exec: {fast_done:?}");

    for id in [a, b] {
        s.ok("workspace_delete", json!({"workspace_id": id})).await;
    }
    s.stop().await;
    e.t.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repo_url_seeds_from_a_clean_clone() {
    let e = TestEnv::new();
    let work = repro_repo();
    std::fs::write(work.path().join("VERSION"), "1\n").unwrap();
    git(work.path(), &["add", "."]);
    git(work.path(), &["commit", "-qm", "v1"]);
    git(work.path(), &["tag", "v1"]);
    std::fs::write(work.path().join("VERSION"), "2\n").unwrap();
    git(work.path(), &["commit", "-qam", "v2"]);
    // Uncommitted noise in the work tree never reaches the clone.
    std::fs::write(work.path().join("DIRTY"), "x\n").unwrap();
    let bare = tempfile::tempdir().unwrap();
    git(bare.path(), &["init", "-q", "--bare"]);
    git(work.path(), &["push", "-q", bare.path().to_str().unwrap(), "HEAD:refs/heads/main", "--tags"]);
    let url = format!("file://{}", bare.path().display());
    let nowhere = tempfile::tempdir().unwrap();

    let s = e.serve(&["--repo-url", &url, "--repo-ref", "v1"], nowhere.path()).await;
    assert!(s.instructions().contains(&format!("a clean clone of {url} at v1")), "{}", s.instructions());
    let w = s.ok("workspace_create", json!({})).await;
    assert_eq!(w["seed_source"], json!({"kind": "repo_url", "url": url, "ref": "v1"}));
    let id = w["id"].as_str().unwrap().to_string();
    let x = s
        .ok(
            "workspace_exec",
            json!({"workspace_id": id, "command": "cat VERSION; ls DIRTY 2>&1; git log --oneline | wc -l"}),
        )
        .await;
    assert_eq!(x["stdout"].as_str().unwrap().lines().next(), Some("1"), "{x}");
    assert!(x["stdout"].as_str().unwrap().contains("No such file"), "{x}");
    assert!(x["stdout"].as_str().unwrap().ends_with("2\n"), "{x}");
    s.ok("workspace_delete", json!({"workspace_id": id})).await;
    let pid = s.pid;
    s.stop().await;
    // The clone goes away with the server.
    // Where pyro keeps clones: its cache dir, resolved as pyro resolves it.
    let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    let cache = var("PYRO_CACHE_DIR")
        .or_else(|| var("XDG_CACHE_HOME").map(|p| p.join("pyro-mcp")))
        .or_else(|| var("HOME").map(|p| p.join(".cache/pyro-mcp")))
        .unwrap();
    let clones = cache.join("mcp");
    let mine = format!("clone-{pid}-");
    let left: Vec<_> = std::fs::read_dir(&clones)
        .map(|d| d.flatten().filter(|e| e.file_name().to_string_lossy().starts_with(&mine)).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "clone left behind in {}", clones.display());
    e.t.assert_clean();

    // A ref that does not exist: the server still starts (the clone runs in the background),
    // and the calls that need the project say why they cannot have it.
    let s = e.serve(&["--repo-url", &url, "--repo-ref", "nope"], nowhere.path()).await;
    let err = s.err("workspace_create", json!({})).await;
    assert_eq!(err["code"], "invalid_argument", "{err}");
    assert!(err["message"].as_str().unwrap().contains("git checkout nope failed"), "{err}");
    s.stop().await;
    // A malformed URL is refused before serving.
    let o = Proc::new(env!("CARGO_BIN_EXE_pyro"))
        .args(["mcp", "serve", "--repo-url", "-oops"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_see_only_their_projects_workspaces() {
    let e = TestEnv::new();
    let (pa, pb) = (repro_repo(), repro_repo());
    let nowhere = tempfile::tempdir().unwrap();
    let a = e.serve(&["--project-path", pa.path().to_str().unwrap()], nowhere.path()).await;
    let b = e.serve(&["--project-path", pb.path().to_str().unwrap()], nowhere.path()).await;
    let w = a.ok("workspace_create", json!({"name": "mine"})).await;
    let id = w["id"].as_str().unwrap().to_string();
    assert!(w["labels"]["mcp.scope"].as_str().unwrap().starts_with(pa.path().file_name().unwrap().to_str().unwrap()));
    assert_eq!(a.ok("workspace_list", json!({})).await["count"], 1);
    // B sees nothing of A's, by id or by name, and can touch nothing of it.
    assert_eq!(b.ok("workspace_list", json!({})).await["count"], 0);
    for key in [id.as_str(), "mine"] {
        assert_eq!(b.err("workspace_status", json!({"workspace_id": key})).await["code"], "not_found");
        let x = b.err("workspace_exec", json!({"workspace_id": key, "command": "true"})).await;
        assert_eq!(x["code"], "not_found");
        assert_eq!(b.err("workspace_delete", json!({"workspace_id": key})).await["code"], "not_found");
    }
    // Models cannot set the scope label (to plant or move a workspace).
    let x = b.err("workspace_create", json!({"labels": {"mcp.scope": "x"}})).await;
    assert!(x["message"].as_str().unwrap().contains("reserved"), "{x}");
    let x = a.err("workspace_update", json!({"workspace_id": id, "clear_labels": ["mcp.scope"]})).await;
    assert!(x["message"].as_str().unwrap().contains("reserved"), "{x}");
    // Environments: a model may name the catalog or what is installed, not any registry image.
    let x = b.err("workspace_create", json!({"environment": "docker.io/library/python:3.12"})).await;
    assert_eq!(x["code"], "not_found", "{x}");
    assert!(x["hint"].as_str().unwrap().contains("--allow-pull"), "{x}");
    b.stop().await;
    // --all-workspaces sees everything.
    let all = e.serve(&["--all-workspaces", "--project-path", pb.path().to_str().unwrap()], nowhere.path()).await;
    assert_eq!(all.ok("workspace_list", json!({})).await["count"], 1);
    assert_eq!(all.ok("workspace_status", json!({"workspace_id": "mine"})).await["id"], id.as_str());
    all.stop().await;
    a.ok("workspace_delete", json!({"workspace_id": id})).await;
    a.stop().await;
    e.t.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instructions_stay_under_2048_characters_whatever_the_flags() {
    let e = TestEnv::new();
    let repo = repro_repo();
    let roots: Vec<tempfile::TempDir> = (0..40)
        .map(|i| {
            tempfile::Builder::new()
                .prefix(&format!("{}-{i}-", "a-rather-long-directory-name".repeat(3)))
                .tempdir()
                .unwrap()
        })
        .collect();
    let mut args = vec!["--project-path".to_string(), repo.path().display().to_string()];
    for r in &roots {
        args.extend(["--allow-root".to_string(), r.path().display().to_string()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let s = e.serve(&args, repo.path()).await;
    let n = s.instructions().chars().count();
    assert!(n < 2048, "{n} characters");
    assert!(s.instructions().contains("more"), "{}", s.instructions());
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_paths_outside_the_allowed_roots_are_refused() {
    let e = TestEnv::new();
    let repo = repro_repo();
    let extra = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(outside.path(), repo.path().join("escape")).unwrap();
    let s = e
        .serve(
            &["--project-path", repo.path().to_str().unwrap(), "--allow-root", extra.path().to_str().unwrap()],
            outside.path(),
        )
        .await;
    let refused = |v: Value| {
        assert_eq!(v["code"], "invalid_argument", "{v}");
        v["message"].as_str().unwrap().to_string()
    };
    for seed in ["/etc", "..", "escape", "escape/x", outside.path().to_str().unwrap()] {
        let m = refused(s.err("workspace_create", json!({"seed_path": seed})).await);
        assert!(m.contains("seed_path"), "{m}");
    }
    let m = refused(s.err("workspace_sync_push", json!({"workspace_id": "any", "source_path": "/etc"})).await);
    assert!(m.contains("outside the allowed roots"), "{m}");
    for out in ["/tmp/pyro-export-test", "../x", "escape/new", "sub/../../x"] {
        let m =
            refused(s.err("workspace_export", json!({"workspace_id": "any", "path": ".", "output_path": out})).await);
        assert!(m.contains("output_path"), "{m}");
    }
    // Inside a root, the path is accepted and the workspace id is what fails.
    let nf = s
        .err("workspace_export", json!({"workspace_id": "nope", "path": ".", "output_path": extra.path().join("x")}))
        .await;
    assert_eq!(nf["code"], "not_found");
    s.stop().await;

    // No project and no roots: every host path is refused.
    let s = e.serve(&[], outside.path()).await;
    let m = refused(s.err("workspace_create", json!({"seed_path": outside.path()})).await);
    assert!(m.contains("host paths are not allowed"), "{m}");
    s.stop().await;
    e.t.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_have_stable_codes_and_vm_run_works() {
    let e = TestEnv::new();
    let nowhere = tempfile::tempdir().unwrap();
    let s = e.serve(&[], nowhere.path()).await;
    for tool in ["workspace_status", "workspace_diff", "workspace_delete", "workspace_summary"] {
        let nf = s.err(tool, json!({"workspace_id": "nope"})).await;
        assert_eq!(nf["code"], "not_found", "{tool}");
        assert!(nf.get("hint").is_some());
    }
    let nf = s.err("workspace_exec", json!({"workspace_id": "nope", "command": "true"})).await;
    assert_eq!(nf["code"], "not_found");
    // Schema violations: unknown or missing fields, wrong types, out-of-range values.
    for (tool, args, needle) in [
        ("workspace_status", json!({"id": "x"}), "unknown field `id`"),
        ("workspace_exec", json!({"workspace_id": "x"}), "missing field `command`"),
        ("workspace_exec", json!({"workspace_id": "x", "command": 5}), "invalid type"),
        ("workspace_exec", json!({"workspace_id": "x", "command": "true", "timeout_seconds": 0}), "timeout_seconds"),
        ("workspace_file_read", json!({"workspace_id": "x", "path": "a", "max_bytes": 2000000}), "max_bytes"),
        ("vm_run", json!({"command": " "}), "command is empty"),
        ("vm_run", json!({"command": "true", "environment": "nope:1"}), "nope:1"),
    ] {
        let v = s.err(tool, args).await;
        assert!(v["code"] == "invalid_argument" || v["code"] == "not_found", "{tool}: {v}");
        assert!(v["message"].as_str().unwrap().contains(needle), "{tool}: {v}");
    }
    // An unknown tool is a protocol error.
    let r = s.client.call_tool(CallToolRequestParams::new("nope")).await;
    assert!(r.is_err());

    let r = s.ok("vm_run", json!({"command": "echo hi; echo oops >&2; exit 3"})).await;
    assert_eq!(r["exit_code"], 3, "{r}");
    assert_eq!(r["stdout"], "hi\n");
    assert_eq!(r["stderr"], "oops\n");
    assert_eq!(r["cleanup"]["deleted"], true);
    s.stop().await;
    e.t.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_through_the_full_profile() {
    let e = TestEnv::new();
    let nowhere = tempfile::tempdir().unwrap();
    let s = e.serve(&["--profile", "workspace-full"], nowhere.path()).await;
    let tools = s.client.list_all_tools().await.unwrap();
    let size = serde_json::to_vec(&json!({ "tools": tools })).unwrap().len();
    println!("workspace-full tools/list: {} tools, {size} bytes", tools.len());
    let start = tools.iter().find(|t| t.name == "service_start").expect("service_start listed");
    assert!(start.output_schema.is_some());
    assert_eq!(start.input_schema["required"], json!(["workspace_id", "name", "command"]));

    let w = s.ok("workspace_create", json!({"name": "svc"})).await;
    let id = w["id"].as_str().unwrap().to_string();
    let bad = s.err("service_start", json!({"workspace_id": id, "name": "a b", "command": "true"})).await;
    assert_eq!(bad["code"], "invalid_argument");
    let two = s
        .err(
            "service_start",
            json!({"workspace_id": id, "name": "x", "command": "true", "ready_file": "a", "ready_tcp": "127.0.0.1:1"}),
        )
        .await;
    assert_eq!(two["code"], "invalid_argument");
    let server = "echo up; perl -MIO::Socket::INET -e 'sleep 1; my $s = IO::Socket::INET->new(LocalPort => 9000, \
                  Listen => 5, ReuseAddr => 1) or die; while (my $c = $s->accept) { close $c }'";
    let started = s
        .ok(
            "service_start",
            json!({"workspace_id": id, "name": "srv", "command": server, "ready_tcp": "127.0.0.1:9000"}),
        )
        .await;
    assert_eq!(started["state"], "ready", "{started}");
    let progress = s.progress.lock().unwrap().clone();
    println!("service_start progress: {progress:?}");
    let l = s.ok("service_list", json!({"workspace_id": "svc"})).await;
    assert_eq!(l["count"], 1, "{l}");
    let logs = s.ok("service_logs", json!({"workspace_id": id, "name": "srv"})).await;
    assert_eq!(logs["stdout"], "up\n", "{logs}");
    let nf = s.err("service_status", json!({"workspace_id": id, "name": "nope"})).await;
    assert_eq!(nf["code"], "not_found");
    let stopped = s.ok("service_stop", json!({"workspace_id": id, "name": "srv"})).await;
    assert_eq!(stopped["state"], "stopped", "{stopped}");
    let st = s.ok("service_status", json!({"workspace_id": id, "name": "srv"})).await;
    assert_eq!(st["state"], "stopped");

    // A shell: open, write, read (plain, after quiet) until the output is there, close.
    let sh = s.ok("shell_open", json!({"workspace_id": id, "cols": 90, "rows": 20})).await;
    let shell = sh["shell_id"].as_str().unwrap().to_string();
    s.ok("shell_write", json!({"workspace_id": id, "shell_id": shell, "input": "stty size; echo done-$((2+3))"})).await;
    let (mut cursor, mut seen) = (0u64, String::new());
    for _ in 0..20 {
        let r = s
            .ok(
                "shell_read",
                json!({"workspace_id": id, "shell_id": shell, "cursor": cursor, "plain": true, "wait_for_idle_ms": 500}),
            )
            .await;
        cursor = r["next_cursor"].as_u64().unwrap();
        seen.push_str(r["output"].as_str().unwrap());
        if seen.contains("done-5") {
            break;
        }
    }
    assert!(seen.contains("20 90") && seen.contains("done-5"), "{seen:?}");
    let bad = s.err("shell_read", json!({"workspace_id": id, "shell_id": "shell-999"})).await;
    assert_eq!(bad["code"], "not_found");
    let closed = s.ok("shell_close", json!({"workspace_id": id, "shell_id": shell})).await;
    assert_eq!(closed["alive"], false, "{closed}");

    // Snapshots: create, change, reset to it, list, delete; bad names are tool errors.
    s.ok("workspace_file_write", json!({"workspace_id": id, "path": "snap.txt", "content": "one\n"})).await;
    let snap = s.ok("snapshot_create", json!({"workspace_id": id, "name": "one"})).await;
    assert_eq!(snap["name"], "one", "{snap}");
    s.ok("workspace_file_write", json!({"workspace_id": id, "path": "snap.txt", "content": "two\n"})).await;
    let r = s.ok("workspace_reset", json!({"workspace_id": id, "snapshot": "one"})).await;
    assert_eq!(r["state"], "running", "{r}");
    let f = s.ok("workspace_file_read", json!({"workspace_id": id, "path": "snap.txt"})).await;
    assert_eq!(f["content"], "one\n", "{f}");
    let l = s.ok("snapshot_list", json!({"workspace_id": id})).await;
    assert_eq!(l["snapshots"][0]["name"], "baseline", "{l}");
    assert_eq!(l["snapshots"][1]["name"], "one", "{l}");
    let reserved = s.err("snapshot_create", json!({"workspace_id": id, "name": "baseline"})).await;
    assert_eq!(reserved["code"], "invalid_argument");
    let missing = s.err("workspace_reset", json!({"workspace_id": id, "snapshot": "nope"})).await;
    assert_eq!(missing["code"], "not_found");
    s.ok("snapshot_delete", json!({"workspace_id": id, "name": "one"})).await;
    s.ok("workspace_delete", json!({"workspace_id": id})).await;
    s.stop().await;
    e.t.assert_clean();
}

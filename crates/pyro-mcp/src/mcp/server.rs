//! The rmcp handler: lists the profile's tools and runs each call as one SDK operation on a
//! blocking thread (so a slow exec in one workspace never holds up another call), with a
//! fresh `Pyro` per call whose progress lines become MCP progress notifications, and whose
//! [`crate::Cancel`] is set when the client cancels the call.
//!
//! Calls see one project's world: workspaces this server's project created (they carry the
//! `mcp.scope` label), unless the server was started with `--all-workspaces`.

use super::source::{CloneJob, HostRoots, ProjectSource, SeedSource};
use super::tools::{self, args, CreateResult, EXEC_OUTPUT_BYTES};
use super::{Profile, ServeOptions};
use crate::error::{Error, Result};
use crate::paths::Paths;
use crate::render::Render;
use crate::{Cancel, Command, CreateOptions, Pyro, RunOptions, UpdateOptions};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation, ListToolsResult,
    PaginatedRequestParams, ProgressNotificationParam, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler, ServiceExt};
use serde::Serialize;
use serde_json::{json, Value};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The label that ties a workspace to the project of the server that created it.
pub const SCOPE_LABEL: &str = "mcp.scope";
/// Longest the server instructions may be, whatever the flags (hosts clip or drop longer).
pub const MAX_INSTRUCTIONS: usize = 2048;
/// A call that has sent no progress for this long sends a heartbeat (hosts reset their
/// per-call idle clocks on progress; Claude Code's is the tightest we know of).
const HEARTBEAT: Duration = Duration::from_secs(5);

/// The pyro MCP server: cheap to clone (one shared state), usable with any rmcp transport.
#[derive(Clone)]
pub struct PyroServer {
    inner: Arc<Inner>,
}

struct Inner {
    profile: Profile,
    tools: Vec<Tool>,
    instructions: String,
    paths: Paths,
    source: ProjectSource,
    /// The `--repo-url` clone, running in the background until ready.
    clone: Option<Arc<CloneJob>>,
    roots: HostRoots,
    /// This server's project, as the `mcp.scope` label value.
    scope: String,
    all_workspaces: bool,
    allow_pull: bool,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(job) = &self.clone {
            job.abort();
        }
        if let ProjectSource::RepoUrl { clone, .. } = &self.source {
            let _ = std::fs::remove_dir_all(clone);
        }
    }
}

/// The scope label value for a project: readable, short, and distinct per project (the path,
/// or the URL and ref, hashed).
pub fn scope_of(source: &ProjectSource) -> String {
    use sha2::Digest;
    let cwd = std::env::current_dir().unwrap_or_default();
    let (key, name) = match source {
        ProjectSource::Project { root } => {
            (format!("path:{}", root.display()), root.file_name().map(|n| n.to_string_lossy().to_string()))
        }
        ProjectSource::RepoUrl { url, reference, .. } => (
            format!("repo:{url}#{}", reference.as_deref().unwrap_or("")),
            url.trim_end_matches('/').rsplit('/').next().map(|n| n.trim_end_matches(".git").to_string()),
        ),
        ProjectSource::None => (format!("cwd:{}", cwd.display()), Some("no-project".to_string())),
    };
    let name: String = name
        .unwrap_or_default()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '-' })
        .take(40)
        .collect();
    let hash = sha2::Sha256::digest(key.as_bytes());
    let hex: String = hash.iter().take(6).map(|b| format!("{b:02x}")).collect();
    if name.is_empty() {
        hex
    } else {
        format!("{name}-{hex}")
    }
}

/// The roots list for the instructions, within `budget` characters.
fn roots_line(roots: &HostRoots, budget: usize) -> String {
    let all = roots.list();
    if all.chars().count() <= budget {
        return all;
    }
    let mut out = String::new();
    for (i, r) in roots.roots.iter().enumerate() {
        let next = crate::text::clip(&r.display().to_string(), 120);
        let rest = format!(" and {} more", roots.roots.len() - i);
        if out.chars().count() + next.chars().count() + 2 + rest.len() > budget {
            return out + &rest;
        }
        if !out.is_empty() {
            out.push_str(", ");
        }
        out.push_str(&next);
    }
    out
}

fn instructions(profile: Profile, source: &ProjectSource, roots: &HostRoots, o: &ServeOptions) -> String {
    let cap = format!(
        "Command output is capped at {} KiB per stream (head and tail kept around a marker).",
        EXEC_OUTPUT_BYTES / 1024
    );
    if profile == Profile::VmRun {
        return format!(
            "pyro-mcp runs commands in disposable Debian microVMs on this host (no network). vm_run boots a \
             fresh VM (environment default: debian:12) for one shell command and destroys it afterwards. {cap}"
        );
    }
    let scope = if o.all_workspaces {
        "You see every workspace of this user (--all-workspaces)."
    } else {
        "You see only the workspaces of this project."
    };
    let mut s = format!(
        "pyro-mcp gives you persistent Debian microVM workspaces on this host (no network unless created with a \
         network_policy).\n\
         Loop: workspace_create (seeds /workspace, returns the id) -> inspect and edit with workspace_file_read, \
         workspace_file_write or workspace_patch_apply -> run tests with workspace_exec -> review with \
         workspace_summary and workspace_diff -> workspace_export results to the host -> workspace_delete when \
         done. workspace_reset goes back to the seeded baseline; vm_run runs one command in a throwaway VM.\n\
         workspace_id takes a workspace's id or name; paths in a workspace are relative to /workspace; the \
         environment defaults to debian:12. {scope} {cap} To see all of a long output, redirect it to a file and \
         page it with workspace_file_read (offset, max_bytes).\n\
         Project source: {}. workspace_create without seed_path seeds from it.\n",
        crate::text::clip(&source.line(), 300)
    );
    let tail = "\nA first call may take minutes (kernel fetch, environment build); progress is reported.";
    if roots.roots.is_empty() {
        s.push_str("Host paths are refused: no project root and no --allow-root was given.");
    } else {
        let base = roots.base.as_ref().map(|b| crate::text::clip(&b.display().to_string(), 200)).unwrap_or_default();
        let fixed = s.chars().count() + tail.len() + base.chars().count() + 120;
        let budget = MAX_INSTRUCTIONS.saturating_sub(fixed).max(40);
        s.push_str(&format!(
            "Host paths (seed_path, source_path, output_path) must be inside: {}; relative ones are resolved \
             against {base}.",
            roots_line(roots, budget)
        ));
    }
    s.push_str(tail);
    // The budget above keeps within the cap; this is the backstop.
    crate::text::clip(&s, MAX_INSTRUCTIONS - 1)
}

impl PyroServer {
    /// Find the project source (planning, not yet running, a `--repo-url` clone) and build
    /// the tool list. Nothing slow happens here, so `initialize` is answered at once: the clone
    /// runs in the background and the runtime (kernel, QEMU, environments) loads on the first
    /// tool call that needs it.
    pub fn new(o: ServeOptions) -> Result<PyroServer> {
        let paths = match &o.paths {
            Some(p) => p.clone(),
            None => Paths::from_env()?,
        };
        if o.repo_url.is_some() && o.project_path.is_some() {
            return Err(Error::invalid("--repo-url and --project-path are exclusive"));
        }
        if o.repo_ref.is_some() && o.repo_url.is_none() {
            return Err(Error::invalid("--repo-ref needs --repo-url"));
        }
        // vm_run takes no host paths and seeds nothing: no project to find, nothing to clone.
        let source = match (&o.repo_url, o.profile) {
            (_, Profile::VmRun) => ProjectSource::None,
            (Some(url), _) => super::source::plan_clone(&paths, url, o.repo_ref.as_deref())?,
            (None, _) => super::source::detect_project(o.project_path.as_deref())?,
        };
        let roots = HostRoots::new(source.seed_dir(), &o.allow_roots)?;
        let names = o.profile.tool_names();
        let tools = tools::all()
            .into_iter()
            .filter(|t| names.contains(&t.name.as_ref()))
            .map(|t| match (o.profile, t.name.as_ref()) {
                (Profile::WorkspaceFull, "workspace_create") => tools::create_full(),
                (Profile::WorkspaceFull, "workspace_exec") => tools::exec_full(),
                (Profile::WorkspaceFull, "workspace_reset") => tools::reset_full(),
                _ => t,
            })
            .collect();
        let instructions = instructions(o.profile, &source, &roots, &o);
        let clone = CloneJob::start(&source);
        Ok(PyroServer {
            inner: Arc::new(Inner {
                profile: o.profile,
                tools,
                instructions,
                paths,
                scope: scope_of(&source),
                source,
                clone,
                roots,
                all_workspaces: o.all_workspaces,
                allow_pull: o.allow_pull,
            }),
        })
    }

    pub fn profile(&self) -> Profile {
        self.inner.profile
    }

    pub fn tools(&self) -> &[Tool] {
        &self.inner.tools
    }

    pub fn instructions(&self) -> &str {
        &self.inner.instructions
    }

    pub fn source(&self) -> &ProjectSource {
        &self.inner.source
    }

    pub fn host_roots(&self) -> &HostRoots {
        &self.inner.roots
    }

    /// The `mcp.scope` label value of this server's project.
    pub fn scope(&self) -> &str {
        &self.inner.scope
    }

    /// Serve on this process's stdin and stdout until the client closes them. Blocks; runs
    /// its own tokio runtime.
    pub fn serve_stdio(self) -> Result<()> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::io("starting the async runtime", e))?;
        let server = self.clone();
        let result = rt.block_on(async move {
            let running = server
                .serve(rmcp::transport::stdio())
                .await
                .map_err(|e| Error::internal(format!("MCP session did not start: {e}")))?;
            running.waiting().await.map_err(|e| Error::internal(format!("MCP session failed: {e}")))?;
            Ok(())
        });
        // The client is gone: do not wait for calls still running on blocking threads (a
        // throwaway VM's supervisor tears it down when this process exits, and a command
        // whose caller is gone is cancelled by its workspace's supervisor).
        rt.shutdown_background();
        if let Some(job) = &self.inner.clone {
            job.abort();
        }
        if let ProjectSource::RepoUrl { clone, .. } = &self.inner.source {
            let _ = std::fs::remove_dir_all(clone);
        }
        result
    }
}

/// A tool's successful result: the SDK value as structured content, its brief rendering as
/// text (the large fields travel once, in the structured content).
struct Reply {
    structured: Value,
    text: String,
}

fn reply<T: Serialize + Render>(v: T) -> Result<Reply> {
    let structured = serde_json::to_value(&v).map_err(|e| Error::internal(format!("serializing the result: {e}")))?;
    // The text content may be shown in a terminal UI: no raw escape sequences from the guest.
    Ok(Reply { structured, text: crate::text::escape_controls(&v.brief()).into_owned() })
}

fn command(c: String) -> Result<Command> {
    if c.trim().is_empty() {
        return Err(Error::invalid("command is empty").hint("give a shell command, e.g. \"make test\""));
    }
    Ok(Command::Shell(c))
}

/// Models may not set or clear the scope label: the server owns it.
fn refuse_scope_label<'a>(keys: impl IntoIterator<Item = &'a String>) -> Result<()> {
    if keys.into_iter().any(|k| k == SCOPE_LABEL) {
        return Err(Error::invalid(format!("the label {SCOPE_LABEL} is reserved: the server sets it")));
    }
    Ok(())
}

impl Inner {
    /// Wait for the `--repo-url` clone if there is one (calls that use the project do).
    fn project_ready(&self, pyro: &Pyro) -> Result<()> {
        match &self.clone {
            Some(job) => job.wait(pyro.progress(), pyro.cancel_token()),
            None => Ok(()),
        }
    }

    /// A model's host path, confined to the roots (after the project clone is there).
    fn confine(&self, pyro: &Pyro, p: &str, what: &str) -> Result<std::path::PathBuf> {
        self.project_ready(pyro)?;
        self.roots.confine(p, what)
    }

    /// An environment a model named must be installed or in the catalog; pulling any other
    /// image from a registry is the server operator's decision (`--allow-pull`), not a model's.
    fn check_environment(&self, name: &str) -> Result<()> {
        crate::env::check_name(name)?;
        if self.allow_pull || crate::env::usable_without_pull(&self.paths, name) {
            return Ok(());
        }
        Err(Error::not_found(format!(
            "environment '{}' is not installed and not in the catalog",
            crate::text::clip(name, 120)
        ))
        .hint("ask the user to run `pyro env pull NAME`, or to start the server with --allow-pull"))
    }

    fn in_scope(&self, labels: &std::collections::BTreeMap<String, String>) -> bool {
        self.all_workspaces || labels.get(SCOPE_LABEL) == Some(&self.scope)
    }

    /// Resolve a model's workspace reference to an id, only within this server's scope (a
    /// workspace of another project is `not_found`, as if it did not exist).
    fn resolve(&self, ws: &crate::Workspaces<'_>, key: &str) -> Result<String> {
        let info = ws.status(key)?;
        if !self.in_scope(&info.labels) {
            return Err(Error::not_found(format!("workspace '{}' not found", crate::text::clip(key, 80)))
                .hint("workspace_list shows this project's workspaces"));
        }
        Ok(info.id)
    }

    /// One tool call, synchronously: parse, call the SDK (which validates), render the result.
    /// Defaults that differ from the SDK's on purpose are passed as explicit option values.
    fn dispatch(&self, pyro: &Pyro, tool: &str, a: Value) -> Result<Reply> {
        if tool == "vm_run" {
            let a: tools::VmRun = args(tool, a)?;
            let mut o = RunOptions::new(
                a.environment.unwrap_or_else(|| tools::DEFAULT_ENVIRONMENT.into()),
                command(a.command)?,
            );
            self.check_environment(&o.environment)?;
            o.timeout_s = tools::exec_timeout(a.timeout_seconds)?;
            o.vcpus = a.vcpu_count.unwrap_or(o.vcpus);
            o.mem_mib = a.mem_mib.unwrap_or(o.mem_mib);
            o.max_output_bytes = EXEC_OUTPUT_BYTES;
            return reply(pyro.run(o)?);
        }
        if tool == "workspace_create" {
            let (a, network, secret_args) = if self.profile == Profile::WorkspaceFull {
                // A malformed call may quote what it was given: never a secret's value.
                let hide = secret_strings(&a);
                let f: tools::CreateFull = args(tool, a).map_err(|e| hide.redact_error(e))?;
                let policy = match &f.network_policy {
                    Some(p) => crate::net::NetworkPolicy::parse(p)?,
                    None => Default::default(),
                };
                (
                    f.base,
                    crate::net::NetworkOptions { policy, publish: vec![], allow_domains: f.allow_domains },
                    f.secrets,
                )
            } else {
                (args::<tools::Create>(tool, a)?, Default::default(), vec![])
            };
            let mut secrets = Vec::new();
            for s in secret_args {
                let source = match (s.value, s.file_path) {
                    (Some(v), None) => crate::SecretSource::Literal(v),
                    (None, Some(p)) => crate::SecretSource::File(self.confine(pyro, &p, "file_path")?),
                    _ => {
                        return Err(Error::invalid(format!(
                            "secret {} needs exactly one of value and file_path",
                            crate::text::clip(&s.name, 80)
                        )))
                    }
                };
                secrets.push(crate::SecretSpec { name: s.name, source });
            }
            refuse_scope_label(a.labels.keys())?;
            let environment = a.environment.unwrap_or_else(|| tools::DEFAULT_ENVIRONMENT.into());
            self.check_environment(&environment)?;
            let explicit = a.seed_path.is_some();
            let (seed_path, seed_source) = match a.seed_path {
                Some(p) => {
                    let p = self.confine(pyro, &p, "seed_path")?;
                    (Some(p.clone()), SeedSource::Explicit { path: p })
                }
                None => {
                    self.project_ready(pyro)?;
                    (self.source.seed_dir().map(Path::to_path_buf), self.source.describe())
                }
            };
            let mut labels = a.labels;
            labels.insert(SCOPE_LABEL.into(), self.scope.clone());
            let o = CreateOptions {
                environment,
                seed_path,
                name: a.name,
                labels,
                vcpu_count: a.vcpu_count,
                mem_mib: a.mem_mib,
                network,
                secrets,
                // Confined as resolved above: the seed code refuses it if it resolves
                // elsewhere by the time it is opened (checked on the descriptor).
                seed_path_resolved: explicit,
            };
            let mut ws = pyro.workspaces()?;
            return reply(CreateResult { workspace: ws.create(&o, pyro.progress())?, seed_source });
        }
        // Parse before opening the runtime: a malformed call costs nothing.
        enum Call {
            List,
            Update(tools::Update),
            Status(String),
            Sync(tools::SyncPush, std::path::PathBuf),
            Exec(tools::Exec, Vec<crate::SecretEnv>),
            Logs(String),
            Summary(String),
            FileList(tools::FileList),
            FileRead(tools::FileRead),
            FileWrite(tools::FileWrite),
            Patch(tools::PatchApply),
            Diff(tools::Diff),
            Export(tools::Export, std::path::PathBuf),
            Reset(String, Option<String>),
            Delete(String),
            ShellOpen(tools::ShellOpen),
            ShellRead(tools::ShellRead),
            ShellWrite(tools::ShellWrite),
            ShellSignal(tools::ShellSignal),
            ShellResize(tools::ShellResize),
            ShellClose(tools::ShellId),
            // --- services ---
            ServiceStart(tools::ServiceStart),
            ServiceList(String),
            ServiceStatus(tools::ServiceName),
            ServiceLogs(tools::ServiceLogs),
            ServiceStop(tools::ServiceStop),
            // --- snapshots ---
            SnapshotCreate(tools::SnapshotName),
            SnapshotList(String),
            SnapshotDelete(tools::SnapshotName),
            // --- stop, start and the stopped disk ---
            Stop(tools::Stop),
            Start(String),
            Fork(tools::Fork),
            DiskList(tools::DiskList),
            DiskRead(tools::DiskRead),
            DiskExport(String, std::path::PathBuf),
        }
        let id = |a: Value| args::<tools::Id>(tool, a).map(|a| a.workspace_id);
        let call = match tool {
            "workspace_list" => args::<tools::Empty>(tool, a).map(|_| Call::List)?,
            "workspace_update" => {
                let a: tools::Update = args(tool, a)?;
                refuse_scope_label(a.labels.keys().chain(a.clear_labels.iter()))?;
                Call::Update(a)
            }
            "workspace_status" => Call::Status(id(a)?),
            "workspace_sync_push" => {
                let a: tools::SyncPush = args(tool, a)?;
                let src = self.confine(pyro, &a.source_path, "source_path")?;
                Call::Sync(a, src)
            }
            "workspace_exec" => {
                let (a, secret_env) = if self.profile == Profile::WorkspaceFull {
                    let f: tools::ExecFull = args(tool, a)?;
                    let specs = tools::secret_env(&f.secret_env)?;
                    (f.base, specs)
                } else {
                    (args::<tools::Exec>(tool, a)?, vec![])
                };
                tools::exec_timeout(a.timeout_seconds)?;
                Call::Exec(a, secret_env)
            }
            "workspace_logs" => Call::Logs(id(a)?),
            "workspace_summary" => Call::Summary(id(a)?),
            "workspace_file_list" => Call::FileList(args(tool, a)?),
            "workspace_file_read" => {
                let a: tools::FileRead = args(tool, a)?;
                tools::file_read_bytes(a.max_bytes)?;
                Call::FileRead(a)
            }
            "workspace_file_write" => Call::FileWrite(args(tool, a)?),
            "workspace_patch_apply" => Call::Patch(args(tool, a)?),
            "workspace_diff" => Call::Diff(args(tool, a)?),
            "workspace_export" => {
                let a: tools::Export = args(tool, a)?;
                let out = self.confine(pyro, &a.output_path, "output_path")?;
                Call::Export(a, out)
            }
            "workspace_reset" if self.profile == Profile::WorkspaceFull => {
                let a: tools::ResetFull = args(tool, a)?;
                Call::Reset(a.workspace_id, a.snapshot)
            }
            "workspace_reset" => Call::Reset(id(a)?, None),
            "workspace_delete" => Call::Delete(id(a)?),
            "shell_open" => Call::ShellOpen(args(tool, a)?),
            "shell_read" => {
                let a: tools::ShellRead = args(tool, a)?;
                tools::shell_read_chars(a.max_chars)?;
                Call::ShellRead(a)
            }
            "shell_write" => Call::ShellWrite(args(tool, a)?),
            "shell_signal" => Call::ShellSignal(args(tool, a)?),
            "shell_resize" => Call::ShellResize(args(tool, a)?),
            "shell_close" => Call::ShellClose(args(tool, a)?),
            "service_start" => Call::ServiceStart(args(tool, a)?),
            "service_list" => Call::ServiceList(id(a)?),
            "service_status" => Call::ServiceStatus(args(tool, a)?),
            "service_logs" => Call::ServiceLogs(args(tool, a)?),
            "service_stop" => Call::ServiceStop(args(tool, a)?),
            "snapshot_create" => Call::SnapshotCreate(args(tool, a)?),
            "snapshot_list" => Call::SnapshotList(id(a)?),
            "snapshot_delete" => Call::SnapshotDelete(args(tool, a)?),
            "workspace_stop" => Call::Stop(args(tool, a)?),
            "workspace_start" => Call::Start(id(a)?),
            "workspace_fork" => {
                let a: tools::Fork = args(tool, a)?;
                refuse_scope_label(a.labels.keys())?;
                Call::Fork(a)
            }
            "workspace_disk_list" => Call::DiskList(args(tool, a)?),
            "workspace_disk_read" => {
                let a: tools::DiskRead = args(tool, a)?;
                tools::file_read_bytes(a.max_bytes)?;
                Call::DiskRead(a)
            }
            "workspace_disk_export" => {
                let a: tools::DiskExport = args(tool, a)?;
                let out = self.confine(pyro, &a.output_path, "output_path")?;
                Call::DiskExport(a.workspace_id, out)
            }
            other => return Err(Error::invalid(format!("unknown tool '{other}'"))),
        };
        let mut ws = pyro.workspaces()?;
        match call {
            Call::List => {
                let mut list = ws.list()?;
                list.workspaces.retain(|w| self.in_scope(&w.labels));
                list.count = list.workspaces.len();
                reply(list)
            }
            Call::Update(a) => {
                let id = self.resolve(&ws, &a.workspace_id)?;
                reply(ws.update(
                    &id,
                    &UpdateOptions {
                        name: a.name,
                        clear_name: a.clear_name,
                        labels: a.labels,
                        clear_labels: a.clear_labels,
                    },
                )?)
            }
            Call::Status(key) => {
                let id = self.resolve(&ws, &key)?;
                reply(ws.status(&id)?)
            }
            Call::Sync(a, src) => {
                let id = self.resolve(&ws, &a.workspace_id)?;
                reply(ws.sync_push_in(&id, &src, true, a.dest.as_deref())?)
            }
            Call::Exec(a, secret_env) => {
                let id = self.resolve(&ws, &a.workspace_id)?;
                let o = crate::ExecOptions {
                    cwd: a.cwd,
                    timeout_s: tools::exec_timeout(a.timeout_seconds)?,
                    env: a.env.into_iter().collect(),
                    secret_env,
                    max_output_bytes: Some(EXEC_OUTPUT_BYTES),
                    ..crate::ExecOptions::new(command(a.command)?)
                };
                reply(ws.exec_with(&id, &o)?)
            }
            Call::Logs(key) => {
                let id = self.resolve(&ws, &key)?;
                reply(ws.logs(&id)?)
            }
            Call::Summary(key) => {
                let id = self.resolve(&ws, &key)?;
                reply(ws.summary(&id)?)
            }
            Call::FileList(a) => {
                let id = self.resolve(&ws, &a.workspace_id)?;
                reply(ws.file_list(&id, a.path.as_deref(), a.recursive)?)
            }
            Call::FileRead(a) => {
                let id = self.resolve(&ws, &a.workspace_id)?;
                let max = tools::file_read_bytes(a.max_bytes)?;
                reply(ws.file_read_at(&id, &a.path, a.offset.unwrap_or(0), Some(max))?)
            }
            Call::FileWrite(a) => {
                let id = self.resolve(&ws, &a.workspace_id)?;
                reply(ws.file_write(&id, &a.path, a.content.as_bytes())?)
            }
            Call::Patch(a) => {
                let id = self.resolve(&ws, &a.workspace_id)?;
                reply(ws.patch_apply(&id, &a.patch)?)
            }
            Call::Diff(a) => {
                let id = self.resolve(&ws, &a.workspace_id)?;
                reply(ws.diff_path(&id, a.path.as_deref(), tools::DIFF_PATCH_BYTES)?)
            }
            Call::Export(a, out) => {
                let id = self.resolve(&ws, &a.workspace_id)?;
                reply(ws.export(&id, &a.path, &out)?)
            }
            Call::Reset(key, snapshot) => {
                let id = self.resolve(&ws, &key)?;
                reply(ws.reset_to(&id, snapshot.as_deref())?)
            }
            Call::Delete(key) => {
                let id = self.resolve(&ws, &key)?;
                reply(ws.delete(&id)?)
            }
            Call::ShellOpen(a) => {
                let id = self.resolve(&ws, &a.workspace_id)?;
                let o = crate::types::ShellOptions {
                    cwd: a.cwd,
                    cols: a.cols.unwrap_or(crate::workspace::shells::DEFAULT_COLS),
                    rows: a.rows.unwrap_or(crate::workspace::shells::DEFAULT_ROWS),
                    env: Vec::new(),
                    secret_env: tools::secret_env(&a.secret_env)?,
                };
                reply(ws.shell_open(&id, &o)?)
            }
            Call::ShellRead(a) => {
                let id = self.resolve(&ws, &a.workspace_id)?;
                let o = crate::types::ShellReadOptions {
                    cursor: a.cursor.unwrap_or(0),
                    max_chars: Some(tools::shell_read_chars(a.max_chars)?),
                    plain: a.plain,
                    wait_for_idle_ms: a.wait_for_idle_ms.unwrap_or(0),
                };
                reply(ws.shell_read(&id, &a.shell_id, &o)?)
            }
            Call::ShellWrite(a) => {
                let id = self.resolve(&ws, &a.workspace_id)?;
                reply(ws.shell_write(&id, &a.shell_id, &a.input, !a.no_newline)?)
            }
            Call::ShellSignal(a) => {
                let id = self.resolve(&ws, &a.workspace_id)?;
                reply(ws.shell_signal(&id, &a.shell_id, a.signal.as_deref().unwrap_or("INT"))?)
            }
            Call::ShellResize(a) => {
                let id = self.resolve(&ws, &a.workspace_id)?;
                reply(ws.shell_resize(&id, &a.shell_id, a.cols, a.rows)?)
            }
            Call::ShellClose(a) => {
                let id = self.resolve(&ws, &a.workspace_id)?;
                reply(ws.shell_close(&id, &a.shell_id)?)
            }
            Call::ServiceStart(a) => {
                use crate::workspace::services::{ReadinessArgs, RestartPolicy, ServiceOptions};
                let id = self.resolve(&ws, &a.workspace_id)?;
                let readiness = ReadinessArgs {
                    file: a.ready_file,
                    tcp: a.ready_tcp,
                    http: a.ready_http,
                    command: a.ready_command,
                }
                .parse()?;
                let mut o = ServiceOptions::new(a.name, command(a.command)?);
                o.cwd = a.cwd;
                o.readiness = readiness;
                o.ready_timeout_s = crate::error::in_range(
                    "ready_timeout_seconds",
                    a.ready_timeout_seconds.unwrap_or(o.ready_timeout_s),
                    1,
                    super::MAX_EXEC_TIMEOUT_S,
                )?;
                o.restart = RestartPolicy::parse(a.restart.as_deref().unwrap_or("no"))?;
                o.secret_env = tools::secret_env(&a.secret_env)?;
                reply(ws.service_start(&id, &o)?)
            }
            Call::ServiceList(key) => {
                let id = self.resolve(&ws, &key)?;
                reply(ws.service_list(&id)?)
            }
            Call::ServiceStatus(a) => {
                let id = self.resolve(&ws, &a.workspace_id)?;
                reply(ws.service_status(&id, &a.name)?)
            }
            Call::ServiceLogs(a) => {
                let id = self.resolve(&ws, &a.workspace_id)?;
                let n = a.tail_lines.unwrap_or(tools::SERVICE_TAIL_DEFAULT);
                let n = crate::error::in_range("tail_lines", n, 0, tools::SERVICE_TAIL_MAX)?;
                let mut l = ws.service_logs(&id, &a.name, Some(n), false)?;
                l.stdout = tools::log_tail(&l.stdout, tools::SERVICE_LOG_BYTES);
                l.stderr = tools::log_tail(&l.stderr, tools::SERVICE_LOG_BYTES);
                reply(l)
            }
            Call::ServiceStop(a) => {
                let id = self.resolve(&ws, &a.workspace_id)?;
                reply(ws.service_stop(&id, &a.name, a.grace_seconds)?)
            }
            Call::SnapshotCreate(a) => {
                let id = self.resolve(&ws, &a.workspace_id)?;
                reply(ws.snapshot_create(&id, &a.name)?)
            }
            Call::SnapshotList(key) => {
                let id = self.resolve(&ws, &key)?;
                reply(ws.snapshot_list(&id)?)
            }
            Call::SnapshotDelete(a) => {
                let id = self.resolve(&ws, &a.workspace_id)?;
                reply(ws.snapshot_delete(&id, &a.name)?)
            }
            Call::Stop(a) => {
                let id = self.resolve(&ws, &a.workspace_id)?;
                reply(ws.stop(&id, a.discard_memory)?)
            }
            Call::Start(key) => {
                let id = self.resolve(&ws, &key)?;
                reply(ws.start(&id)?)
            }
            Call::Fork(a) => {
                let id = self.resolve(&ws, &a.workspace_id)?;
                let mut labels = a.labels;
                labels.insert(SCOPE_LABEL.into(), self.scope.clone());
                reply(ws.fork(&id, &crate::ForkOptions { name: a.name, labels })?)
            }
            Call::DiskList(a) => {
                let id = self.resolve(&ws, &a.workspace_id)?;
                reply(ws.disk_list(&id, a.path.as_deref(), a.recursive)?)
            }
            Call::DiskRead(a) => {
                let id = self.resolve(&ws, &a.workspace_id)?;
                let max = tools::file_read_bytes(a.max_bytes)?;
                reply(ws.disk_read(&id, &a.path, a.offset.unwrap_or(0), Some(max))?)
            }
            Call::DiskExport(key, out) => {
                let id = self.resolve(&ws, &key)?;
                reply(ws.disk_export(&id, &out)?)
            }
        }
    }
}

/// A redactor for every string under a call's `secrets` argument, so that an error about a
/// malformed call cannot quote a secret's value.
fn secret_strings(a: &Value) -> crate::workspace::secrets::Redactor {
    fn walk(v: &Value, out: &mut Vec<(String, String)>) {
        match v {
            Value::String(s) => out.push(("value".into(), s.clone())),
            Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            Value::Object(o) => o.values().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    if let Some(s) = a.get("secrets") {
        walk(s, &mut out);
    }
    crate::workspace::secrets::Redactor::new(out)
}

fn success(r: Reply) -> CallToolResult {
    let mut result = CallToolResult::structured(r.structured);
    result.content = vec![ContentBlock::text(r.text)];
    result
}

/// An SDK error as a tool error: `{"error": {"code", "message", "hint"}}` plus the text.
/// (Claude Code shows models only the text of an error result, so the text carries the code,
/// the message and the hint too.)
pub fn failure(e: &Error) -> CallToolResult {
    let v = json!({"error": {"code": e.code.as_str(), "message": e.message, "hint": e.hint}});
    let mut r = CallToolResult::structured_error(v);
    r.content = vec![ContentBlock::text(error_text(e))];
    r
}

/// Text for an error result.
fn error_text(e: &Error) -> String {
    match &e.hint {
        Some(h) => format!("error ({}): {}\nhint: {h}", e.code.as_str(), e.message),
        None => format!("error ({}): {}", e.code.as_str(), e.message),
    }
}

/// Send the call's progress lines as notifications, plus a heartbeat (elapsed time and the
/// last phase) whenever none went out for [`HEARTBEAT`], until the call's sender is dropped.
async fn forward_progress(
    tool: String,
    token: rmcp::model::ProgressToken,
    peer: rmcp::Peer<RoleServer>,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<String>,
) {
    let started = Instant::now();
    let mut n = 0u32;
    let mut last = "started".to_string();
    let mut sent_at = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            line = rx.recv() => match line {
                Some(l) => last = l,
                None => break,
            },
            _ = tick.tick() => {
                if sent_at.elapsed() < HEARTBEAT {
                    continue;
                }
            }
        }
        n += 1;
        let msg = format!("{tool} {} s: {}", started.elapsed().as_secs(), crate::text::clip(&last, 200));
        let p = ProgressNotificationParam::new(token.clone(), f64::from(n)).with_message(msg);
        let _ = peer.notify_progress(p).await;
        sent_at = Instant::now();
    }
}

impl ServerHandler for PyroServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("pyro-mcp", crate::VERSION))
            .with_instructions(self.inner.instructions.clone())
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> std::result::Result<ListToolsResult, McpError> {
        Ok(ListToolsResult::with_all_items(self.inner.tools.clone()))
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        self.inner.tools.iter().find(|t| t.name == name).cloned()
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> std::result::Result<CallToolResponse, McpError> {
        let name = request.name.to_string();
        if !self.inner.tools.iter().any(|t| t.name == name) {
            return Err(McpError::invalid_params(
                format!("unknown tool '{}' (profile {})", crate::text::clip(&name, 80), self.inner.profile),
                None,
            ));
        }
        let arguments = Value::Object(request.arguments.unwrap_or_default());
        // Progress lines from the SDK (a sync callback on the blocking thread) go through a
        // channel to a task that sends them as notifications, with heartbeats in between.
        let (tx, forwarder) = match context.meta.get_progress_token() {
            Some(token) => {
                let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<String>();
                let task = tokio::spawn(forward_progress(name.clone(), token, context.peer.clone(), rx));
                (Some(tx), Some(task))
            }
            None => (None, None),
        };
        let cancel = Cancel::new();
        let inner = self.inner.clone();
        let tool = name.clone();
        let c2 = cancel.clone();
        let mut job = tokio::task::spawn_blocking(move || {
            let mut pyro = Pyro::with_paths(inner.paths.clone()).with_cancel(c2).with_exec_progress(HEARTBEAT);
            if let Some(tx) = tx {
                pyro = pyro.on_progress(move |line| {
                    let _ = tx.send(line.to_string());
                });
            }
            inner.dispatch(&pyro, &tool, arguments)
        });
        // A client's `notifications/cancelled` cancels `context.ct`: pass it on to the SDK (a
        // running guest command is killed), then wait for the call to wind down.
        let joined = tokio::select! {
            r = &mut job => r,
            _ = context.ct.cancelled() => {
                cancel.cancel();
                job.await
            }
        };
        if let Some(task) = forwarder {
            let _ = task.await; // every progress notification goes out before the result
        }
        let result = match joined {
            Ok(Ok(r)) => success(r),
            Ok(Err(e)) => failure(&e),
            Err(_) => failure(&Error::internal(format!("{name} failed unexpectedly")).hint("this is a bug in pyro")),
        };
        Ok(result.into())
    }
}

//! The rmcp handler: lists the profile's tools and runs each call as one SDK operation on a
//! blocking thread (so a slow exec in one workspace never holds up another call), with a
//! fresh `Pyro` per call whose progress lines become MCP progress notifications.

use super::source::{HostRoots, ProjectSource, SeedSource};
use super::tools::{self, args, CreateResult, EXEC_OUTPUT_BYTES};
use super::{Profile, ServeOptions};
use crate::error::{Error, Result};
use crate::paths::Paths;
use crate::render::Render;
use crate::{Command, CreateOptions, Pyro, RunOptions, UpdateOptions};
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
    roots: HostRoots,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let ProjectSource::RepoUrl { clone, .. } = &self.source {
            let _ = std::fs::remove_dir_all(clone);
        }
    }
}

fn instructions(profile: Profile, source: &ProjectSource, roots: &HostRoots) -> String {
    let cap = "Command output is capped at 64 KiB per stream (head and tail kept around a marker).";
    if profile == Profile::VmRun {
        return format!(
            "pyro-mcp runs commands in disposable Debian microVMs on this host (no network). vm_run boots a \
             fresh VM (environment default: debian:12) for one shell command and destroys it afterwards. {cap}"
        );
    }
    let host = if roots.roots.is_empty() {
        "Host paths are refused: no project root and no --allow-root was given.".to_string()
    } else {
        format!(
            "Host paths (seed_path, source_path, output_path) must be inside: {}; relative ones are resolved \
             against {}.",
            roots.list(),
            roots.base.as_ref().map(|b| b.display().to_string()).unwrap_or_default()
        )
    };
    format!(
        "pyro-mcp gives you persistent Debian microVM workspaces on this host (no network).\n\
         Loop: workspace_create (seeds /workspace, returns the id) -> inspect and edit with workspace_file_read, \
         workspace_file_write or workspace_patch_apply -> run tests with workspace_exec -> review with \
         workspace_summary and workspace_diff -> workspace_export results to the host -> workspace_delete when \
         done. workspace_reset goes back to the seeded baseline; vm_run runs one command in a throwaway VM.\n\
         workspace_id takes a workspace's id or name; paths in a workspace are relative to /workspace; the \
         environment defaults to debian:12. {cap}\n\
         Project source: {}. workspace_create without seed_path seeds from it.\n\
         {host}\n\
         A first call may take minutes (kernel fetch, environment build); progress is reported.",
        source.line()
    )
}

impl PyroServer {
    /// Find the project source (cloning `--repo-url` if given) and build the tool list. The
    /// runtime (kernel, QEMU, environments) is not touched: it loads on the first tool call.
    pub fn new(o: ServeOptions) -> Result<PyroServer> {
        let paths = match o.paths {
            Some(p) => p,
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
            (Some(url), _) => super::source::clone_repo(&paths, url, o.repo_ref.as_deref())?,
            (None, _) => super::source::detect_project(o.project_path.as_deref())?,
        };
        let roots = match HostRoots::new(source.seed_dir(), &o.allow_roots) {
            Ok(r) => r,
            Err(e) => {
                if let ProjectSource::RepoUrl { clone, .. } = &source {
                    let _ = std::fs::remove_dir_all(clone);
                }
                return Err(e);
            }
        };
        let names = o.profile.tool_names();
        let tools = tools::all()
            .into_iter()
            .filter(|t| names.contains(&t.name.as_ref()))
            .map(|t| {
                if o.profile == Profile::WorkspaceFull && t.name == "workspace_create" {
                    tools::create_full()
                } else {
                    t
                }
            })
            .collect();
        let instructions = instructions(o.profile, &source, &roots);
        Ok(PyroServer { inner: Arc::new(Inner { profile: o.profile, tools, instructions, paths, source, roots }) })
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
        // throwaway VM's supervisor tears it down when this process exits).
        rt.shutdown_background();
        if let ProjectSource::RepoUrl { clone, .. } = &self.inner.source {
            let _ = std::fs::remove_dir_all(clone);
        }
        result
    }
}

/// A tool's successful result: the SDK value as structured content, its rendering as text.
struct Reply {
    structured: Value,
    text: String,
}

fn reply<T: Serialize + Render>(v: T) -> Result<Reply> {
    let structured = serde_json::to_value(&v).map_err(|e| Error::internal(format!("serializing the result: {e}")))?;
    Ok(Reply { structured, text: v.text() })
}

fn command(c: String) -> Result<Command> {
    if c.trim().is_empty() {
        return Err(Error::invalid("command is empty").hint("give a shell command, e.g. \"make test\""));
    }
    Ok(Command::Shell(c))
}

impl Inner {
    /// One tool call, synchronously: parse, call the SDK (which validates), render the result.
    /// Defaults that differ from the SDK's on purpose are passed as explicit option values.
    fn dispatch(&self, pyro: &Pyro, tool: &str, a: Value) -> Result<Reply> {
        use crate::run::DEFAULT_TIMEOUT_S;
        if tool == "vm_run" {
            let a: tools::VmRun = args(tool, a)?;
            let mut o = RunOptions::new(
                a.environment.unwrap_or_else(|| tools::DEFAULT_ENVIRONMENT.into()),
                command(a.command)?,
            );
            o.timeout_s = a.timeout_seconds.unwrap_or(DEFAULT_TIMEOUT_S);
            o.vcpus = a.vcpu_count.unwrap_or(o.vcpus);
            o.mem_mib = a.mem_mib.unwrap_or(o.mem_mib);
            o.max_output_bytes = EXEC_OUTPUT_BYTES;
            return reply(pyro.run(o)?);
        }
        if tool == "workspace_create" {
            let (a, network) = if self.profile == Profile::WorkspaceFull {
                let f: tools::CreateFull = args(tool, a)?;
                let policy = match &f.network_policy {
                    Some(p) => crate::net::NetworkPolicy::parse(p)?,
                    None => Default::default(),
                };
                (f.base, crate::net::NetworkOptions { policy, publish: vec![], allow_domains: f.allow_domains })
            } else {
                (args::<tools::Create>(tool, a)?, Default::default())
            };
            let (seed_path, seed_source) = match a.seed_path {
                Some(p) => {
                    let p = self.roots.confine(&p, "seed_path")?;
                    (Some(p.clone()), SeedSource::Explicit { path: p })
                }
                None => (self.source.seed_dir().map(Path::to_path_buf), self.source.describe()),
            };
            let o = CreateOptions {
                environment: a.environment.unwrap_or_else(|| tools::DEFAULT_ENVIRONMENT.into()),
                seed_path,
                name: a.name,
                labels: a.labels,
                vcpu_count: a.vcpu_count,
                mem_mib: a.mem_mib,
                network,
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
            Exec(tools::Exec),
            Logs(String),
            Summary(String),
            FileList(tools::FileList),
            FileRead(tools::FileRead),
            FileWrite(tools::FileWrite),
            Patch(tools::PatchApply),
            Diff(String),
            Export(tools::Export, std::path::PathBuf),
            Reset(String),
            Delete(String),
        }
        let id = |a: Value| args::<tools::Id>(tool, a).map(|a| a.workspace_id);
        let call = match tool {
            "workspace_list" => args::<tools::Empty>(tool, a).map(|_| Call::List)?,
            "workspace_update" => Call::Update(args(tool, a)?),
            "workspace_status" => Call::Status(id(a)?),
            "workspace_sync_push" => {
                let a: tools::SyncPush = args(tool, a)?;
                let src = self.roots.confine(&a.source_path, "source_path")?;
                Call::Sync(a, src)
            }
            "workspace_exec" => Call::Exec(args(tool, a)?),
            "workspace_logs" => Call::Logs(id(a)?),
            "workspace_summary" => Call::Summary(id(a)?),
            "workspace_file_list" => Call::FileList(args(tool, a)?),
            "workspace_file_read" => Call::FileRead(args(tool, a)?),
            "workspace_file_write" => Call::FileWrite(args(tool, a)?),
            "workspace_patch_apply" => Call::Patch(args(tool, a)?),
            "workspace_diff" => Call::Diff(id(a)?),
            "workspace_export" => {
                let a: tools::Export = args(tool, a)?;
                let out = self.roots.confine(&a.output_path, "output_path")?;
                Call::Export(a, out)
            }
            "workspace_reset" => Call::Reset(id(a)?),
            "workspace_delete" => Call::Delete(id(a)?),
            other => return Err(Error::invalid(format!("unknown tool '{other}'"))),
        };
        let mut ws = pyro.workspaces()?;
        match call {
            Call::List => reply(ws.list()?),
            Call::Update(a) => reply(ws.update(
                &a.workspace_id,
                &UpdateOptions {
                    name: a.name,
                    clear_name: a.clear_name,
                    labels: a.labels,
                    clear_labels: a.clear_labels,
                },
            )?),
            Call::Status(id) => reply(ws.status(&id)?),
            Call::Sync(a, src) => reply(ws.sync_push(&a.workspace_id, &src, a.dest.as_deref())?),
            Call::Exec(a) => reply(ws.exec(
                &a.workspace_id,
                command(a.command)?,
                a.cwd.as_deref(),
                a.timeout_seconds.unwrap_or(DEFAULT_TIMEOUT_S),
                a.env.into_iter().collect(),
                Some(EXEC_OUTPUT_BYTES),
            )?),
            Call::Logs(id) => reply(ws.logs(&id)?),
            Call::Summary(id) => reply(ws.summary(&id)?),
            Call::FileList(a) => reply(ws.file_list(&a.workspace_id, a.path.as_deref(), a.recursive)?),
            Call::FileRead(a) => reply(ws.file_read(&a.workspace_id, &a.path, a.max_bytes)?),
            Call::FileWrite(a) => reply(ws.file_write(&a.workspace_id, &a.path, a.content.as_bytes())?),
            Call::Patch(a) => reply(ws.patch_apply(&a.workspace_id, &a.patch)?),
            Call::Diff(id) => reply(ws.diff(&id)?),
            Call::Export(a, out) => reply(ws.export(&a.workspace_id, &a.path, &out)?),
            Call::Reset(id) => reply(ws.reset(&id)?),
            Call::Delete(id) => reply(ws.delete(&id)?),
        }
    }
}

fn success(r: Reply) -> CallToolResult {
    let mut result = CallToolResult::structured(r.structured);
    result.content = vec![ContentBlock::text(r.text)];
    result
}

/// An SDK error as a tool error: `{"error": {"code", "message", "hint"}}` plus the text.
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

impl ServerHandler for PyroServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("pyro-mcp", env!("CARGO_PKG_VERSION")))
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
        // channel to a task that sends them as notifications, numbered 1, 2, 3...
        let (tx, forwarder) = match context.meta.get_progress_token() {
            Some(token) => {
                let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
                let peer = context.peer.clone();
                let task = tokio::spawn(async move {
                    let mut n = 0u32;
                    while let Some(line) = rx.recv().await {
                        n += 1;
                        let p = ProgressNotificationParam::new(token.clone(), f64::from(n)).with_message(line);
                        let _ = peer.notify_progress(p).await;
                    }
                });
                (Some(tx), Some(task))
            }
            None => (None, None),
        };
        let inner = self.inner.clone();
        let tool = name.clone();
        let joined = tokio::task::spawn_blocking(move || {
            let mut pyro = Pyro::with_paths(inner.paths.clone());
            if let Some(tx) = tx {
                pyro = pyro.on_progress(move |line| {
                    let _ = tx.send(line.to_string());
                });
            }
            inner.dispatch(&pyro, &tool, arguments)
        })
        .await;
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

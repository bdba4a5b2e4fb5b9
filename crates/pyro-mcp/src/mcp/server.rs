//! The rmcp handler: lists the profile's tools and runs each call as one SDK operation on a
//! blocking thread (so a slow exec in one workspace never holds up another call), with a
//! fresh `Pyro` per call whose progress lines become MCP progress notifications, and whose
//! [`crate::Cancel`] is set when the client cancels the call.
//!
//! Calls see one project's world: workspaces this server's project created (they carry the
//! `mcp.scope` label), unless the server was started with `--all-workspaces`.

use super::app;
use super::handlers::{Ctx, Reply};
use super::profile::{Profile, ServeOptions};
use super::registry;
use super::source::{CloneJob, HostRoots, ProjectSource};
use super::state::{scope_of, Inner};
use super::tools::EXEC_OUTPUT_BYTES;
use crate::error::{Error, Result};
use crate::paths::Paths;
use crate::{Cancel, Pyro};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation, InitializeRequestParams,
    InitializeResult, ListResourcesResult, ListToolsResult, PaginatedRequestParams, ProgressNotificationParam,
    ReadResourceRequestParams, ReadResourceResponse, ReadResourceResult, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler, ServiceExt};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

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
        let tools = registry::list(o.profile);
        let instructions = instructions(o.profile, &source, &roots, &o);
        let clone = CloneJob::start(&source);
        Ok(PyroServer {
            inner: Arc::new(Inner {
                profile: o.profile,
                tools,
                instructions,
                scope: scope_of(&source),
                source,
                clone,
                roots,
                all_workspaces: o.all_workspaces,
                allow_pull: o.allow_pull,
                calls: Arc::default(),
                base: Pyro::with_paths(paths),
            }),
        })
    }

    /// The profile this server was started with.
    pub fn profile(&self) -> Profile {
        self.inner.profile
    }

    /// Whether this server's profile has the review tools (the MCP App is theirs).
    fn offers_review(&self) -> bool {
        self.inner.tools.iter().any(|t| t.name == "workspace_summary")
    }

    /// The tools this server lists, as `tools/list` returns them.
    pub fn tools(&self) -> &[Tool] {
        &self.inner.tools
    }

    /// The `instructions` this server sends hosts at initialize.
    pub fn instructions(&self) -> &str {
        &self.inner.instructions
    }

    /// What `workspace_create` seeds from when a call gives no `seed_path`.
    pub fn source(&self) -> &ProjectSource {
        &self.inner.source
    }

    /// The host directories a model's host paths must stay inside.
    pub fn host_roots(&self) -> &HostRoots {
        &self.inner.roots
    }

    /// The calls in flight over HTTP (the HTTP layer marks those whose client went away).
    pub fn calls(&self) -> &Arc<super::calls::Calls> {
        &self.inner.calls
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

    /// The default handshake; a client that declares the MCP Apps extension also learns that
    /// this server has resources (the review app) and speaks the extension.
    async fn initialize(
        &self,
        request: InitializeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> std::result::Result<InitializeResult, McpError> {
        context.peer.set_peer_info(request.clone());
        let mut result = self.negotiate_initialize(&request)?;
        if app::supported(Some(&request.capabilities)) {
            result.capabilities.resources = Some(Default::default());
            result
                .capabilities
                .extensions
                .get_or_insert_with(Default::default)
                .insert(app::EXTENSION.into(), Default::default());
        }
        Ok(result)
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> std::result::Result<ListToolsResult, McpError> {
        if app::supported(context.client_capabilities().as_ref()) && self.offers_review() {
            return Ok(ListToolsResult::with_all_items(app::with_ui(&self.inner.tools)));
        }
        Ok(ListToolsResult::with_all_items(self.inner.tools.clone()))
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> std::result::Result<ListResourcesResult, McpError> {
        let ui = app::supported(context.client_capabilities().as_ref()) && self.offers_review();
        Ok(ListResourcesResult::with_all_items(if ui { vec![app::resource()] } else { Vec::new() }))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> std::result::Result<ReadResourceResponse, McpError> {
        if request.uri != app::REVIEW_URI || !self.offers_review() {
            return Err(McpError::resource_not_found(
                format!("no resource {}", crate::text::clip(&request.uri, 120)),
                None,
            ));
        }
        Ok(ReadResourceResult::new(vec![app::contents()]).into())
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
        let Some(entry) = registry::find(self.inner.profile, &name) else {
            return Err(McpError::invalid_params(
                format!("unknown tool '{}' (profile {})", crate::text::clip(&name, 80), self.inner.profile),
                None,
            ));
        };
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
        // Over HTTP, the request's key: a client that goes away cancels the call.
        let http_key = context
            .extensions
            .get::<http::request::Parts>()
            .and_then(|p| p.headers.get(super::calls::CALL_HEADER))
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if let Some(k) = http_key {
            self.inner.calls.attach(k, &cancel);
        }
        let inner = self.inner.clone();
        let tool = name.clone();
        let c2 = cancel.clone();
        let mut job = tokio::task::spawn_blocking(move || {
            // The first call prepares the runtime itself (with its progress reaching the
            // client: a kernel fetch can take minutes); the server keeps it for the next ones.
            let mut pyro = inner.base.for_call(c2).with_exec_progress(HEARTBEAT);
            if let Some(tx) = tx {
                pyro = pyro.on_progress(move |line| {
                    let _ = tx.send(line.to_string());
                });
            }
            let ctx = Ctx { server: &inner, pyro: &pyro, tool: &tool };
            let result = entry.call(&ctx, inner.profile, arguments);
            inner.base.keep_runtime_of(&pyro);
            result
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
        if let Some(k) = http_key {
            self.inner.calls.forget(k);
        }
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

//! What the MCP tool calls do, past parsing: each handler takes its tool's typed arguments
//! and returns the SDK result, through a [`Ctx`] that holds the server's rules (host paths
//! confined to the roots, environments a model may name, the project's scope). Calls that
//! only resolve the workspace and call the SDK are closures in the registry's table.
//!
//! Within a handler, checks that need no runtime (ranges, host paths, reserved labels) come
//! before the runtime opens and the workspace is resolved: a malformed call costs nothing.

use super::profile::MAX_EXEC_TIMEOUT_S;
use super::source::SeedSource;
use super::state::{Inner, SCOPE_LABEL};
use super::tools::*;
use crate::error::{Error, Result};
use crate::render::Render;
use crate::workspace::{files as f, lifecycle as l, services as s, shells as sh};
use crate::{Command, CreateOptions, Pyro, RunOptions, UpdateOptions, WorkspaceInfo};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One call's context: the server, and the `Pyro` (progress, cancel) made for this call.
pub struct Ctx<'a> {
    pub(super) server: &'a Inner,
    pub(super) pyro: &'a Pyro,
    pub(super) tool: &'a str,
}

/// A tool's successful result: the SDK value as structured content, its brief rendering as
/// text (the large fields travel once, in the structured content).
pub struct Reply {
    pub(super) structured: Value,
    pub(super) text: String,
}

pub fn reply<T: Serialize + Render>(v: T) -> Result<Reply> {
    let structured = serde_json::to_value(&v).map_err(|e| Error::internal(format!("serializing the result: {e}")))?;
    // The text content may be shown in a terminal UI: no raw escape sequences from the guest.
    Ok(Reply { structured, text: crate::text::escape_controls(&v.brief()).into_owned() })
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

impl Ctx<'_> {
    /// This call's arguments as `T` (see [`args`]).
    pub fn parse<T: DeserializeOwned>(&self, v: Value) -> Result<T> {
        let hide = secret_strings(&v);
        args(self.tool, v).map_err(|e| hide.redact_error(e))
    }

    /// Wait for the `--repo-url` clone if there is one (calls that use the project do).
    fn project_ready(&self) -> Result<()> {
        match &self.server.clone {
            Some(job) => job.wait(self.pyro.progress(), self.pyro.cancel_token()),
            None => Ok(()),
        }
    }

    /// A model's host path, confined to the roots (after the project clone is there).
    fn confine(&self, p: &str, what: &str) -> Result<PathBuf> {
        self.project_ready()?;
        self.server.roots.confine(p, what)
    }

    /// An environment a model named must be installed or in the catalog; pulling any other
    /// image from a registry is the server operator's decision (`--allow-pull`), not a model's.
    fn check_environment(&self, name: &str) -> Result<()> {
        crate::env::check_name(name)?;
        if self.server.allow_pull || crate::env::usable_without_pull(self.server.base.paths(), name) {
            return Ok(());
        }
        Err(Error::not_found(format!(
            "environment '{}' is not installed and not in the catalog",
            crate::text::clip(name, 120)
        ))
        .hint("ask the user to run `pyro env pull NAME`, or to start the server with --allow-pull"))
    }

    fn in_scope(&self, labels: &BTreeMap<String, String>) -> bool {
        self.server.all_workspaces || labels.get(SCOPE_LABEL) == Some(&self.server.scope)
    }

    /// Open the runtime, resolve a model's workspace reference to an id within this server's
    /// scope (a workspace of another project is `not_found`, as if it did not exist), and
    /// run `f` on it.
    pub fn workspace<R>(&self, key: &str, f: impl FnOnce(&mut crate::Workspaces<'_>, &str) -> Result<R>) -> Result<R> {
        let mut ws = self.pyro.workspaces()?;
        let info = ws.status(key)?;
        if !self.in_scope(&info.labels) {
            return Err(Error::not_found(format!("workspace '{}' not found", crate::text::clip(key, 80)))
                .hint("workspace_list shows this project's workspaces"));
        }
        f(&mut ws, &info.id)
    }

    /// A `workspace_create` secret as a spec; a file is read from a confined host path.
    fn secret(&self, s: SecretArg) -> Result<crate::SecretSpec> {
        let source = match (s.value, s.file_path) {
            (Some(v), None) => crate::SecretSource::Literal(v),
            (None, Some(p)) => crate::SecretSource::File(self.confine(&p, "file_path")?),
            _ => {
                let name = crate::text::clip(&s.name, 80);
                return Err(Error::invalid(format!("secret {name} needs exactly one of value and file_path")));
            }
        };
        Ok(crate::SecretSpec { name: s.name, source })
    }
}

// Defaults that differ from the SDK's on purpose (output caps, read sizes, the environment)
// are passed as explicit option values.

pub fn vm_run(c: &Ctx, a: VmRun) -> Result<crate::RunResult> {
    let mut o = RunOptions::new(a.environment.unwrap_or_else(|| DEFAULT_ENVIRONMENT.into()), command(a.command)?);
    c.check_environment(&o.environment)?;
    o.timeout_s = exec_timeout(a.timeout_seconds)?;
    o.vcpus = a.vcpu_count.unwrap_or(o.vcpus);
    o.mem_mib = a.mem_mib.unwrap_or(o.mem_mib);
    o.max_output_bytes = EXEC_OUTPUT_BYTES;
    c.pyro.run(o)
}

pub fn create(c: &Ctx, a: Wider<Create, CreateExtra>) -> Result<CreateResult> {
    let Wider { base: a, extra } = a;
    let policy = match &extra.network_policy {
        Some(p) => crate::net::NetworkPolicy::parse(p)?,
        None => Default::default(),
    };
    let network = crate::net::NetworkOptions { policy, publish: vec![], allow_domains: extra.allow_domains };
    let secrets = extra.secrets.into_iter().map(|s| c.secret(s)).collect::<Result<Vec<_>>>()?;
    refuse_scope_label(a.labels.keys())?;
    let environment = a.environment.unwrap_or_else(|| DEFAULT_ENVIRONMENT.into());
    c.check_environment(&environment)?;
    let explicit = a.seed_path.is_some();
    let (seed_path, seed_source) = match a.seed_path {
        Some(p) => {
            let p = c.confine(&p, "seed_path")?;
            (Some(p.clone()), SeedSource::Explicit { path: p })
        }
        None => {
            c.project_ready()?;
            (c.server.source.seed_dir().map(Path::to_path_buf), c.server.source.describe())
        }
    };
    let mut labels = a.labels;
    labels.insert(SCOPE_LABEL.into(), c.server.scope.clone());
    let o = CreateOptions {
        environment,
        seed_path,
        name: a.name,
        labels,
        vcpu_count: a.vcpu_count,
        mem_mib: a.mem_mib,
        network,
        secrets,
        // Confined as resolved above: the seed code refuses it if it resolves elsewhere by
        // the time it is opened (checked on the descriptor).
        seed_path_resolved: explicit,
    };
    let workspace = c.pyro.workspaces()?.create(&o, c.pyro.progress())?;
    Ok(CreateResult { workspace, seed_source })
}

pub fn list(c: &Ctx, _: Empty) -> Result<crate::WorkspaceList> {
    let mut list = c.pyro.workspaces()?.list()?;
    list.workspaces.retain(|w| c.in_scope(&w.labels));
    list.count = list.workspaces.len();
    Ok(list)
}

pub fn update(c: &Ctx, a: Update) -> Result<WorkspaceInfo> {
    refuse_scope_label(a.labels.keys().chain(a.clear_labels.iter()))?;
    let o = UpdateOptions { name: a.name, clear_name: a.clear_name, labels: a.labels, clear_labels: a.clear_labels };
    c.workspace(&a.workspace_id, |ws, id| ws.update(id, &o))
}

pub fn sync_push(c: &Ctx, a: SyncPush) -> Result<f::SyncPush> {
    let src = c.confine(&a.source_path, "source_path")?;
    c.workspace(&a.workspace_id, |ws, id| ws.sync_push_in(id, &src, true, a.dest.as_deref()))
}

pub fn exec(c: &Ctx, a: Wider<Exec, SecretEnvArg>) -> Result<l::ExecRecord> {
    let secret_env = secret_env(&a.extra.secret_env)?;
    let Exec { workspace_id, command: cmd, cwd, timeout_seconds, env } = a.base;
    let timeout_s = exec_timeout(timeout_seconds)?;
    c.workspace(&workspace_id, move |ws, id| {
        let o = crate::ExecOptions {
            cwd,
            timeout_s,
            env: env.into_iter().collect(),
            secret_env,
            max_output_bytes: Some(EXEC_OUTPUT_BYTES),
            ..crate::ExecOptions::new(command(cmd)?)
        };
        ws.exec_with(id, &o)
    })
}

pub fn file_read(c: &Ctx, a: FileRead) -> Result<f::FileRead> {
    let max = file_read_bytes(a.max_bytes)?;
    c.workspace(&a.workspace_id, |ws, id| ws.file_read_at(id, &a.path, a.offset.unwrap_or(0), Some(max)))
}

/// A stopped workspace's disk: `path` absolute, or relative to /workspace.
pub fn disk_list(c: &Ctx, a: FileList) -> Result<f::FileList> {
    c.workspace(&a.workspace_id, |ws, id| ws.disk_list(id, a.path.as_deref(), a.recursive))
}

pub fn disk_read(c: &Ctx, a: FileRead) -> Result<f::FileRead> {
    let max = file_read_bytes(a.max_bytes)?;
    c.workspace(&a.workspace_id, |ws, id| ws.disk_read(id, &a.path, a.offset.unwrap_or(0), Some(max)))
}

pub fn export(c: &Ctx, a: Export) -> Result<crate::workspace::export::ExportReport> {
    let out = c.confine(&a.output_path, "output_path")?;
    c.workspace(&a.workspace_id, |ws, id| ws.export(id, &a.path, &out))
}

pub fn disk_export(c: &Ctx, a: DiskExport) -> Result<crate::workspace::disk::DiskExport> {
    let out = c.confine(&a.output_path, "output_path")?;
    c.workspace(&a.workspace_id, |ws, id| ws.disk_export(id, &out))
}

pub fn reset(c: &Ctx, a: Wider<Id, SnapshotArg>) -> Result<WorkspaceInfo> {
    c.workspace(&a.base.workspace_id, |ws, id| ws.reset_to(id, a.extra.snapshot.as_deref()))
}

pub fn shell_open(c: &Ctx, a: ShellOpen) -> Result<sh::ShellInfo> {
    c.workspace(&a.workspace_id, |ws, id| {
        let o = crate::types::ShellOptions {
            cwd: a.cwd,
            cols: a.cols.unwrap_or(sh::DEFAULT_COLS),
            rows: a.rows.unwrap_or(sh::DEFAULT_ROWS),
            env: Vec::new(),
            secret_env: secret_env(&a.secret_env)?,
        };
        ws.shell_open(id, &o)
    })
}

pub fn shell_read(c: &Ctx, a: ShellRead) -> Result<sh::ShellRead> {
    let o = crate::types::ShellReadOptions {
        cursor: a.cursor.unwrap_or(0),
        max_chars: Some(shell_read_chars(a.max_chars)?),
        plain: a.plain,
        wait_for_idle_ms: a.wait_for_idle_ms.unwrap_or(0),
    };
    c.workspace(&a.workspace_id, |ws, id| ws.shell_read(id, &a.shell_id, &o))
}

pub fn shell_signal(c: &Ctx, a: ShellSignal) -> Result<sh::ShellInfo> {
    let signal = a.signal.as_deref().unwrap_or("INT");
    c.workspace(&a.workspace_id, |ws, id| ws.shell_signal(id, &a.shell_id, signal))
}

pub fn service_start(c: &Ctx, a: ServiceStart) -> Result<s::ServiceInfo> {
    use s::{ReadinessArgs, RestartPolicy, ServiceOptions};
    let ServiceStart { workspace_id, name, command: cmd, cwd, ready_timeout_seconds, restart, .. } = a;
    let readiness =
        ReadinessArgs { file: a.ready_file, tcp: a.ready_tcp, http: a.ready_http, command: a.ready_command };
    c.workspace(&workspace_id, move |ws, id| {
        let readiness = readiness.parse()?;
        let mut o = ServiceOptions::new(name, command(cmd)?);
        o.readiness = readiness;
        o.cwd = cwd;
        let timeout = ready_timeout_seconds.unwrap_or(o.ready_timeout_s);
        o.ready_timeout_s = crate::error::in_range("ready_timeout_seconds", timeout, 1, MAX_EXEC_TIMEOUT_S)?;
        o.restart = RestartPolicy::parse(restart.as_deref().unwrap_or("no"))?;
        o.secret_env = secret_env(&a.secret_env)?;
        ws.service_start(id, &o)
    })
}

pub fn service_logs(c: &Ctx, a: ServiceLogs) -> Result<s::ServiceLogs> {
    c.workspace(&a.workspace_id, |ws, id| {
        let n =
            crate::error::in_range("tail_lines", a.tail_lines.unwrap_or(SERVICE_TAIL_DEFAULT), 0, SERVICE_TAIL_MAX)?;
        let mut l = ws.service_logs(id, &a.name, Some(n), false)?;
        l.stdout = log_tail(&l.stdout, SERVICE_LOG_BYTES);
        l.stderr = log_tail(&l.stderr, SERVICE_LOG_BYTES);
        Ok(l)
    })
}

pub fn fork(c: &Ctx, a: Fork) -> Result<WorkspaceInfo> {
    refuse_scope_label(a.labels.keys())?;
    let mut labels = a.labels;
    labels.insert(SCOPE_LABEL.into(), c.server.scope.clone());
    c.workspace(&a.workspace_id, |ws, id| ws.fork(id, &crate::ForkOptions { name: a.name, labels }))
}

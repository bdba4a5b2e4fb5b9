//! The operations Python calls: one `Native` method per SDK operation, named `area_verb`
//! (`ws_exec`, `env_pull`), keyword arguments named like the CLI's flags, each returning its
//! result as the CLI's `--json` prints it. Arguments are turned into the SDK's option types
//! here and nowhere else; validation is the SDK's (the same errors the CLI gives).

use crate::call::{self, CancelToken};
use pyo3::prelude::*;
use pyro_mcp::types::*;
use pyro_mcp::{Command, Error, Paths, Pyro, Result, Workspaces};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// A command from Python: one string runs through `/bin/sh -c`, a list of strings is argv.
#[derive(FromPyObject)]
pub enum Cmd {
    /// `"make test"`.
    Shell(String),
    /// `["make", "test"]`.
    Argv(Vec<String>),
}

impl Cmd {
    fn command(self) -> Result<Command> {
        match self {
            Cmd::Shell(s) if s.trim().is_empty() => Err(Error::invalid("command is empty")
                .hint("give a shell command as one string, or argv as a list of strings")),
            Cmd::Shell(s) => Ok(Command::Shell(s)),
            Cmd::Argv(v) if v.is_empty() => Err(Error::invalid("command is an empty list")),
            Cmd::Argv(v) => Ok(Command::Argv(v)),
        }
    }
}

/// File content from Python: text (written as UTF-8) or bytes.
#[derive(FromPyObject)]
pub enum Content {
    /// `str`.
    Text(String),
    /// `bytes`.
    Bytes(Vec<u8>),
}

/// What every call of one `Native` shares: the directories and the handle's settings.
struct Config {
    /// The handle every call's comes from: it prepares the runtime once (QEMU, the kernel,
    /// the initramfs, the accelerator) and each call reuses it.
    base: Pyro,
    progress: Option<Arc<Mutex<pyro_mcp::Throttle>>>,
}

impl Config {
    /// A `Pyro` for one call, watching `cancel` (as the MCP server makes one per tool call).
    fn pyro(&self, cancel: pyro_mcp::Cancel) -> Pyro {
        // A failure to prepare is the call's to report (through its own handle), not ours.
        let _ = self.base.runtime();
        let p = self.base.for_call(cancel);
        match &self.progress {
            Some(t) => p.on_progress(shower(t.clone())),
            None => p,
        }
    }
}

/// Progress lines on stderr, as the CLI prints them when stderr is a log: every phase, and a
/// phase's updates (byte counts, running seconds) at most once per 5 s. `try_lock`: a
/// process forked while another thread printed must not wait for a lock nobody will free.
fn shower(throttle: Arc<Mutex<pyro_mcp::Throttle>>) -> impl Fn(&str) + Send + Sync + 'static {
    move |line| {
        let admit = throttle.try_lock().map(|mut t| t.admit(line, std::time::Instant::now())).unwrap_or(true);
        if admit {
            eprintln!("[pyro] {}", pyro_mcp::text::escape_controls(line));
        }
    }
}

/// The result as the CLI's `--json` prints it.
fn json<T: Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| Error::internal(format!("serializing the result: {e}")))
}

fn kv(m: Option<BTreeMap<String, String>>) -> Vec<(String, String)> {
    m.unwrap_or_default().into_iter().collect()
}

fn secret_env(v: Option<Vec<String>>) -> Result<Vec<pyro_mcp::SecretEnv>> {
    v.unwrap_or_default().iter().map(|s| pyro_mcp::SecretEnv::parse(s)).collect()
}

fn ports(v: Option<Vec<String>>) -> Result<Vec<pyro_mcp::PortSpec>> {
    v.unwrap_or_default().iter().map(|s| pyro_mcp::PortSpec::parse(s)).collect()
}

fn network(policy: Option<String>, allow_domains: Option<Vec<String>>) -> Result<pyro_mcp::NetworkOptions> {
    let policy = match policy {
        Some(p) => pyro_mcp::NetworkPolicy::parse(&p)?,
        None => Default::default(),
    };
    Ok(pyro_mcp::NetworkOptions { policy, publish: Vec::new(), allow_domains: allow_domains.unwrap_or_default() })
}

/// `secrets={"NAME": "value"}` and `secret_files={"NAME": "path"}`, checked as the CLI's
/// `--secret NAME=VALUE` and `--secret-file NAME=PATH` are (a name holding `=` would split
/// elsewhere there, so it is refused here).
fn secrets(
    literal: Option<BTreeMap<String, String>>,
    files: Option<BTreeMap<String, PathBuf>>,
) -> Result<Vec<SecretSpec>> {
    let flag = |n: &str, v: &str, parse: fn(&str) -> Result<SecretSpec>| {
        if n.contains('=') {
            return Err(Error::invalid("a secret's name cannot contain '='"));
        }
        parse(&format!("{n}={v}"))
    };
    let literal = literal.unwrap_or_default().into_iter().map(|(n, v)| flag(&n, &v, SecretSpec::parse_literal));
    let files =
        files.unwrap_or_default().into_iter().map(|(n, p)| flag(&n, &p.to_string_lossy(), SecretSpec::parse_file));
    literal.chain(files).collect()
}

/// Every result type's JSON schema, by type name: what `python/pyro_mcp/types.py` is
/// generated from (scripts/py-types.py), so the Python classes cannot drift from the Rust.
#[pyfunction]
pub fn schemas() -> PyResult<String> {
    macro_rules! all {
        ($($t:ty),* $(,)?) => {{
            let mut m = serde_json::Map::new();
            $( m.insert(stringify!($t).to_string(), serde_json::to_value(schemars::schema_for!($t)).unwrap_or_default()); )*
            m
        }};
    }
    let m = all!(
        RunResult,
        WorkspaceInfo,
        WorkspaceList,
        ExecRecord,
        Logs,
        FileList,
        FileRead,
        FileWrite,
        SyncPush,
        PatchReport,
        DiffResult,
        Summary,
        ExportReport,
        DeleteReport,
        StopReport,
        StartReport,
        SnapshotInfo,
        SnapshotList,
        SnapshotDeleted,
        ShellInfo,
        ShellList,
        ShellRead,
        ServiceInfo,
        ServiceList,
        ServiceLogs,
        DiskExport,
        EnvironmentList,
        EnvironmentDetails,
        PullReport,
        PruneReport,
        DoctorReport,
        SweepReport,
    );
    Ok(serde_json::Value::Object(m).to_string())
}

/// Name the `pyro` binary that supervises VMs (the wheel installs it in the environment's
/// scripts directory; `$PYRO_BIN` still wins). The first call wins.
#[pyfunction]
pub fn set_pyro_binary(path: PathBuf) {
    pyro_mcp::internal::set_pyro_binary(path);
}

/// The SDK for Python: one per `pyro_mcp.Pyro`. Safe to share between threads: each call
/// makes its own SDK handle, as each MCP tool call does.
#[pyclass(frozen, module = "pyro_mcp._native")]
pub struct Native {
    cfg: Arc<Config>,
}

type Token<'py> = Option<PyRef<'py, CancelToken>>;

impl Native {
    /// Run `f` with a `Pyro` for this call.
    fn with<T, F>(&self, py: Python<'_>, cancel: Token<'_>, f: F) -> PyResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Pyro) -> Result<T> + Send + 'static,
    {
        let cfg = self.cfg.clone();
        call::run(py, cancel.as_deref(), move |c| f(&cfg.pyro(c)))
    }

    /// Run `f` on the user's workspaces; its result as JSON.
    fn ws<T, F>(&self, py: Python<'_>, cancel: Token<'_>, f: F) -> PyResult<String>
    where
        T: Serialize,
        F: FnOnce(&mut Workspaces<'_>) -> Result<T> + Send + 'static,
    {
        self.with(py, cancel, move |p| json(&f(&mut p.workspaces()?)?))
    }
}

#[pymethods]
impl Native {
    #[new]
    #[pyo3(signature = (*, templates=None, spares=None, progress=true, diff_tracking=None))]
    fn new(
        templates: Option<bool>,
        spares: Option<bool>,
        progress: bool,
        diff_tracking: Option<bool>,
    ) -> PyResult<Self> {
        let paths = Paths::from_env().map_err(|e| Python::attach(|py| call::to_py(py, &e)))?;
        let progress = progress.then(|| Arc::new(Mutex::new(pyro_mcp::Throttle::new(pyro_mcp::THROTTLE_EVERY))));
        let mut base = Pyro::with_paths(paths);
        if let Some(t) = &progress {
            base = base.on_progress(shower(t.clone()));
        }
        if let Some(on) = templates {
            base = base.with_templates(on);
        }
        if let Some(on) = spares {
            base = base.with_spares(on);
        }
        if let Some(on) = diff_tracking {
            base = base.with_diff_tracking(on);
        }
        Ok(Native { cfg: Arc::new(Config { base, progress }) })
    }

    /// The data directory (workspaces, their database), as the CLI uses it.
    #[getter]
    fn data_dir(&self) -> PathBuf {
        self.cfg.base.paths().data.clone()
    }

    #[pyo3(signature = (environment, command, *, timeout_seconds=None, vcpu_count=None, mem_mib=None,
        env=None, max_output_bytes=None, allow_host_compat=false, network_policy=None, allow_domains=None,
        cancel=None))]
    #[allow(clippy::too_many_arguments)]
    fn run(
        &self,
        py: Python<'_>,
        environment: String,
        command: Cmd,
        timeout_seconds: Option<u64>,
        vcpu_count: Option<u32>,
        mem_mib: Option<u32>,
        env: Option<BTreeMap<String, String>>,
        max_output_bytes: Option<u64>,
        allow_host_compat: bool,
        network_policy: Option<String>,
        allow_domains: Option<Vec<String>>,
        cancel: Token<'_>,
    ) -> PyResult<String> {
        self.with(py, cancel, move |p| {
            let mut o = pyro_mcp::RunOptions::new(environment, command.command()?);
            o.timeout_s = timeout_seconds.unwrap_or(o.timeout_s);
            o.vcpus = vcpu_count.unwrap_or(o.vcpus);
            o.mem_mib = mem_mib.unwrap_or(o.mem_mib);
            o.max_output_bytes = max_output_bytes.unwrap_or(o.max_output_bytes);
            o.env = kv(env);
            o.allow_host_compat = allow_host_compat;
            o.network = network(network_policy, allow_domains)?;
            json(&p.run(o)?)
        })
    }

    #[pyo3(signature = (cancel=None))]
    fn doctor(&self, py: Python<'_>, cancel: Token<'_>) -> PyResult<String> {
        self.with(py, cancel, |p| json(&p.doctor()))
    }

    #[pyo3(signature = (cancel=None))]
    fn repair(&self, py: Python<'_>, cancel: Token<'_>) -> PyResult<String> {
        self.with(py, cancel, |p| json(&p.repair()?))
    }

    #[pyo3(signature = (cancel=None))]
    fn env_list(&self, py: Python<'_>, cancel: Token<'_>) -> PyResult<String> {
        self.with(py, cancel, |p| json(&p.list_environments()))
    }

    #[pyo3(signature = (name, *, insecure=false, cancel=None))]
    fn env_pull(&self, py: Python<'_>, name: String, insecure: bool, cancel: Token<'_>) -> PyResult<String> {
        self.with(py, cancel, move |p| {
            let i = p.pull_environment_with(&name, &PullOptions { insecure })?;
            json(&PullReport::from(&i))
        })
    }

    #[pyo3(signature = (name, *, cancel=None))]
    fn env_inspect(&self, py: Python<'_>, name: String, cancel: Token<'_>) -> PyResult<String> {
        self.with(py, cancel, move |p| json(&p.inspect_environment(&name)?))
    }

    #[pyo3(signature = (*, dry_run=false, cancel=None))]
    fn env_prune(&self, py: Python<'_>, dry_run: bool, cancel: Token<'_>) -> PyResult<String> {
        self.with(py, cancel, move |p| json(&p.prune_environments(dry_run)?))
    }

    #[pyo3(signature = (environment, *, seed_path=None, name=None, labels=None, vcpu_count=None, mem_mib=None,
        network_policy=None, allow_domains=None, publish=None, secrets=None, secret_files=None, cancel=None))]
    #[allow(clippy::too_many_arguments)]
    fn ws_create(
        &self,
        py: Python<'_>,
        environment: String,
        seed_path: Option<PathBuf>,
        name: Option<String>,
        labels: Option<BTreeMap<String, String>>,
        vcpu_count: Option<u32>,
        mem_mib: Option<u32>,
        network_policy: Option<String>,
        allow_domains: Option<Vec<String>>,
        publish: Option<Vec<String>>,
        secrets: Option<BTreeMap<String, String>>,
        secret_files: Option<BTreeMap<String, PathBuf>>,
        cancel: Token<'_>,
    ) -> PyResult<String> {
        self.with(py, cancel, move |p| {
            let mut net = network(network_policy, allow_domains)?;
            net.publish = ports(publish)?;
            let o = CreateOptions {
                environment,
                seed_path,
                name,
                labels: labels.unwrap_or_default(),
                vcpu_count,
                mem_mib,
                network: net,
                secrets: self::secrets(secrets, secret_files)?,
                seed_path_resolved: false,
            };
            json(&p.workspaces()?.create(&o, p.progress())?)
        })
    }

    #[pyo3(signature = (*, cancel=None))]
    fn ws_list(&self, py: Python<'_>, cancel: Token<'_>) -> PyResult<String> {
        self.ws(py, cancel, |w| w.list())
    }

    #[pyo3(signature = (id, *, cancel=None))]
    fn ws_status(&self, py: Python<'_>, id: String, cancel: Token<'_>) -> PyResult<String> {
        self.ws(py, cancel, move |w| w.status(&id))
    }

    #[pyo3(signature = (id, *, name=None, clear_name=false, labels=None, clear_labels=None, cancel=None))]
    #[allow(clippy::too_many_arguments)]
    fn ws_update(
        &self,
        py: Python<'_>,
        id: String,
        name: Option<String>,
        clear_name: bool,
        labels: Option<BTreeMap<String, String>>,
        clear_labels: Option<Vec<String>>,
        cancel: Token<'_>,
    ) -> PyResult<String> {
        self.ws(py, cancel, move |w| {
            let o = UpdateOptions {
                name,
                clear_name,
                labels: labels.unwrap_or_default(),
                clear_labels: clear_labels.unwrap_or_default(),
            };
            w.update(&id, &o)
        })
    }

    #[pyo3(signature = (id, command, *, timeout_seconds=None, cwd=None, env=None, secret_env=None,
        max_output_bytes=None, cancel=None))]
    #[allow(clippy::too_many_arguments)]
    fn ws_exec(
        &self,
        py: Python<'_>,
        id: String,
        command: Cmd,
        timeout_seconds: Option<u64>,
        cwd: Option<String>,
        env: Option<BTreeMap<String, String>>,
        secret_env: Option<Vec<String>>,
        max_output_bytes: Option<u64>,
        cancel: Token<'_>,
    ) -> PyResult<String> {
        self.ws(py, cancel, move |w| {
            let mut o = ExecOptions::new(command.command()?);
            o.timeout_s = timeout_seconds.unwrap_or(o.timeout_s);
            o.cwd = cwd;
            o.env = kv(env);
            o.secret_env = self::secret_env(secret_env)?;
            o.max_output_bytes = max_output_bytes;
            w.exec_with(&id, &o)
        })
    }

    #[pyo3(signature = (id, *, cancel=None))]
    fn ws_logs(&self, py: Python<'_>, id: String, cancel: Token<'_>) -> PyResult<String> {
        self.ws(py, cancel, move |w| w.logs(&id))
    }

    #[pyo3(signature = (id, path=None, *, recursive=false, cancel=None))]
    fn ws_file_list(
        &self,
        py: Python<'_>,
        id: String,
        path: Option<String>,
        recursive: bool,
        cancel: Token<'_>,
    ) -> PyResult<String> {
        self.ws(py, cancel, move |w| w.file_list(&id, path.as_deref(), recursive))
    }

    /// The JSON, and the content's exact bytes (the JSON's `content` is text).
    #[pyo3(signature = (id, path, *, offset=0, max_bytes=None, cancel=None))]
    #[allow(clippy::too_many_arguments)]
    fn ws_file_read(
        &self,
        py: Python<'_>,
        id: String,
        path: String,
        offset: u64,
        max_bytes: Option<u64>,
        cancel: Token<'_>,
    ) -> PyResult<(String, pyo3::Py<pyo3::types::PyBytes>)> {
        let (j, bytes) = self.with(py, cancel, move |p| {
            let r = p.workspaces()?.file_read_at(&id, &path, offset, max_bytes)?;
            Ok((json(&r)?, r.content))
        })?;
        Ok((j, pyo3::types::PyBytes::new(py, &bytes).unbind()))
    }

    #[pyo3(signature = (id, path, content, *, cancel=None))]
    fn ws_file_write(
        &self,
        py: Python<'_>,
        id: String,
        path: String,
        content: Content,
        cancel: Token<'_>,
    ) -> PyResult<String> {
        let bytes = match content {
            Content::Text(t) => t.into_bytes(),
            Content::Bytes(b) => b,
        };
        self.ws(py, cancel, move |w| w.file_write(&id, &path, &bytes))
    }

    #[pyo3(signature = (id, source, *, dest=None, cancel=None))]
    fn ws_sync_push(
        &self,
        py: Python<'_>,
        id: String,
        source: PathBuf,
        dest: Option<String>,
        cancel: Token<'_>,
    ) -> PyResult<String> {
        self.ws(py, cancel, move |w| w.sync_push(&id, &source, dest.as_deref()))
    }

    #[pyo3(signature = (id, patch, *, cancel=None))]
    fn ws_patch_apply(&self, py: Python<'_>, id: String, patch: String, cancel: Token<'_>) -> PyResult<String> {
        self.ws(py, cancel, move |w| w.patch_apply(&id, &patch))
    }

    #[pyo3(signature = (id, path=None, cursor=0, *, cancel=None))]
    fn ws_diff(
        &self,
        py: Python<'_>,
        id: String,
        path: Option<String>,
        cursor: usize,
        cancel: Token<'_>,
    ) -> PyResult<String> {
        self.ws(py, cancel, move |w| w.diff_page(&id, path.as_deref(), usize::MAX, cursor))
    }

    #[pyo3(signature = (id, *, cancel=None))]
    fn ws_summary(&self, py: Python<'_>, id: String, cancel: Token<'_>) -> PyResult<String> {
        self.ws(py, cancel, move |w| w.summary(&id))
    }

    #[pyo3(signature = (id, path, output, *, max_bytes=None, include_git_config=false, cancel=None))]
    #[allow(clippy::too_many_arguments)]
    fn ws_export(
        &self,
        py: Python<'_>,
        id: String,
        path: String,
        output: PathBuf,
        max_bytes: Option<u64>,
        include_git_config: bool,
        cancel: Token<'_>,
    ) -> PyResult<String> {
        self.ws(py, cancel, move |w| {
            w.export_with(&id, &path, &output, &ExportOptions { max_bytes, include_git_config })
        })
    }

    #[pyo3(signature = (id, *, snapshot=None, cancel=None))]
    fn ws_reset(&self, py: Python<'_>, id: String, snapshot: Option<String>, cancel: Token<'_>) -> PyResult<String> {
        self.ws(py, cancel, move |w| w.reset_to(&id, snapshot.as_deref()))
    }

    #[pyo3(signature = (id, *, cancel=None))]
    fn ws_delete(&self, py: Python<'_>, id: String, cancel: Token<'_>) -> PyResult<String> {
        self.ws(py, cancel, move |w| w.delete(&id))
    }

    #[pyo3(signature = (id, *, discard_memory=false, cancel=None))]
    fn ws_stop(&self, py: Python<'_>, id: String, discard_memory: bool, cancel: Token<'_>) -> PyResult<String> {
        self.ws(py, cancel, move |w| w.stop(&id, discard_memory))
    }

    #[pyo3(signature = (id, *, cancel=None))]
    fn ws_start(&self, py: Python<'_>, id: String, cancel: Token<'_>) -> PyResult<String> {
        self.ws(py, cancel, move |w| w.start(&id))
    }

    #[pyo3(signature = (id, *, name=None, labels=None, cancel=None))]
    fn ws_fork(
        &self,
        py: Python<'_>,
        id: String,
        name: Option<String>,
        labels: Option<BTreeMap<String, String>>,
        cancel: Token<'_>,
    ) -> PyResult<String> {
        self.ws(py, cancel, move |w| w.fork(&id, &pyro_mcp::ForkOptions { name, labels: labels.unwrap_or_default() }))
    }

    #[pyo3(signature = (id, name, *, cancel=None))]
    fn snapshot_create(&self, py: Python<'_>, id: String, name: String, cancel: Token<'_>) -> PyResult<String> {
        self.ws(py, cancel, move |w| w.snapshot_create(&id, &name))
    }

    #[pyo3(signature = (id, *, cancel=None))]
    fn snapshot_list(&self, py: Python<'_>, id: String, cancel: Token<'_>) -> PyResult<String> {
        self.ws(py, cancel, move |w| w.snapshot_list(&id))
    }

    #[pyo3(signature = (id, name, *, cancel=None))]
    fn snapshot_delete(&self, py: Python<'_>, id: String, name: String, cancel: Token<'_>) -> PyResult<String> {
        self.ws(py, cancel, move |w| w.snapshot_delete(&id, &name))
    }

    #[pyo3(signature = (id, *, cwd=None, cols=120, rows=30, env=None, secret_env=None, cancel=None))]
    #[allow(clippy::too_many_arguments)]
    fn shell_open(
        &self,
        py: Python<'_>,
        id: String,
        cwd: Option<String>,
        cols: u16,
        rows: u16,
        env: Option<BTreeMap<String, String>>,
        secret_env: Option<Vec<String>>,
        cancel: Token<'_>,
    ) -> PyResult<String> {
        self.ws(py, cancel, move |w| {
            let o = ShellOptions { cwd, cols, rows, env: kv(env), secret_env: self::secret_env(secret_env)? };
            w.shell_open(&id, &o)
        })
    }

    #[pyo3(signature = (id, shell, *, cursor=0, max_chars=None, plain=false, wait_for_idle_ms=0, cancel=None))]
    #[allow(clippy::too_many_arguments)]
    fn shell_read(
        &self,
        py: Python<'_>,
        id: String,
        shell: String,
        cursor: u64,
        max_chars: Option<u64>,
        plain: bool,
        wait_for_idle_ms: u64,
        cancel: Token<'_>,
    ) -> PyResult<String> {
        self.ws(py, cancel, move |w| {
            w.shell_read(&id, &shell, &ShellReadOptions { cursor, max_chars, plain, wait_for_idle_ms })
        })
    }

    #[pyo3(signature = (id, shell, input, *, newline=true, cancel=None))]
    fn shell_write(
        &self,
        py: Python<'_>,
        id: String,
        shell: String,
        input: String,
        newline: bool,
        cancel: Token<'_>,
    ) -> PyResult<String> {
        self.ws(py, cancel, move |w| w.shell_write(&id, &shell, &input, newline))
    }

    #[pyo3(signature = (id, shell, *, signal="INT".to_string(), cancel=None))]
    fn shell_signal(
        &self,
        py: Python<'_>,
        id: String,
        shell: String,
        signal: String,
        cancel: Token<'_>,
    ) -> PyResult<String> {
        self.ws(py, cancel, move |w| w.shell_signal(&id, &shell, &signal))
    }

    #[pyo3(signature = (id, shell, *, cols, rows, cancel=None))]
    fn shell_resize(
        &self,
        py: Python<'_>,
        id: String,
        shell: String,
        cols: u16,
        rows: u16,
        cancel: Token<'_>,
    ) -> PyResult<String> {
        self.ws(py, cancel, move |w| w.shell_resize(&id, &shell, cols, rows))
    }

    #[pyo3(signature = (id, *, cancel=None))]
    fn shell_list(&self, py: Python<'_>, id: String, cancel: Token<'_>) -> PyResult<String> {
        self.ws(py, cancel, move |w| w.shell_list(&id))
    }

    #[pyo3(signature = (id, shell, *, cancel=None))]
    fn shell_close(&self, py: Python<'_>, id: String, shell: String, cancel: Token<'_>) -> PyResult<String> {
        self.ws(py, cancel, move |w| w.shell_close(&id, &shell))
    }

    #[pyo3(signature = (id, name, command, *, cwd=None, ready_file=None, ready_tcp=None, ready_http=None,
        ready_command=None, ready_timeout_seconds=30, ready_interval_ms=500, restart="no".to_string(), env=None,
        secret_env=None, publish=None, cancel=None))]
    #[allow(clippy::too_many_arguments)]
    fn service_start(
        &self,
        py: Python<'_>,
        id: String,
        name: String,
        command: Cmd,
        cwd: Option<String>,
        ready_file: Option<String>,
        ready_tcp: Option<String>,
        ready_http: Option<String>,
        ready_command: Option<String>,
        ready_timeout_seconds: u64,
        ready_interval_ms: u64,
        restart: String,
        env: Option<BTreeMap<String, String>>,
        secret_env: Option<Vec<String>>,
        publish: Option<Vec<String>>,
        cancel: Token<'_>,
    ) -> PyResult<String> {
        self.ws(py, cancel, move |w| {
            let readiness =
                ReadinessArgs { file: ready_file, tcp: ready_tcp, http: ready_http, command: ready_command }.parse()?;
            let mut o = ServiceOptions::new(name, command.command()?);
            o.cwd = cwd;
            o.readiness = readiness;
            o.ready_timeout_s = ready_timeout_seconds;
            o.ready_interval_ms = ready_interval_ms;
            o.restart = RestartPolicy::parse(&restart)?;
            o.env = kv(env);
            o.secret_env = self::secret_env(secret_env)?;
            o.publish = ports(publish)?;
            w.service_start(&id, &o)
        })
    }

    #[pyo3(signature = (id, *, cancel=None))]
    fn service_list(&self, py: Python<'_>, id: String, cancel: Token<'_>) -> PyResult<String> {
        self.ws(py, cancel, move |w| w.service_list(&id))
    }

    #[pyo3(signature = (id, name, *, cancel=None))]
    fn service_status(&self, py: Python<'_>, id: String, name: String, cancel: Token<'_>) -> PyResult<String> {
        self.ws(py, cancel, move |w| w.service_status(&id, &name))
    }

    #[pyo3(signature = (id, name, *, tail_lines=200, all=false, cancel=None))]
    fn service_logs(
        &self,
        py: Python<'_>,
        id: String,
        name: String,
        tail_lines: u64,
        all: bool,
        cancel: Token<'_>,
    ) -> PyResult<String> {
        self.ws(py, cancel, move |w| w.service_logs(&id, &name, Some(tail_lines), all))
    }

    #[pyo3(signature = (id, name, *, grace_seconds=5, cancel=None))]
    fn service_stop(
        &self,
        py: Python<'_>,
        id: String,
        name: String,
        grace_seconds: u64,
        cancel: Token<'_>,
    ) -> PyResult<String> {
        self.ws(py, cancel, move |w| w.service_stop(&id, &name, Some(grace_seconds)))
    }
}

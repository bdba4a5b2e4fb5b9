//! Long-running services in a workspace, host side: start (and wait for readiness), list,
//! status, logs and stop.
//!
//! The guest agent owns the processes (see pyro-guest's `service`); the host records each
//! service in the state database with the guest's boot id at start. Every look at a service
//! compares that boot id with the running guest's: a service whose VM restarted (a reset, a
//! killed VM booted again) is reported `lost`, never `running`, and a VM that is not running
//! is not booted just to look. Transitions the host observes become review events
//! (`service_start`, `service_ready`, `service_exit`, `service_failure`, `service_stop`).

use super::base::Workspaces;
use super::event::{ServiceChange, WorkspaceEvent};
use super::guest_path;
use super::store::Row;
use crate::clock::now_s;
use crate::error::{Code, Error, Result};
use crate::net::{NetworkPolicy, PortSpec, PublishedPort};
use crate::text::clip;
use crate::vm::Client;
use pyro_proto::{Command, Readiness, Reply, Request, ServiceSpec, ServiceState};
use rusqlite::params;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

pub const DEFAULT_READY_TIMEOUT_S: u64 = 30;
pub const MAX_READY_TIMEOUT_S: u64 = 3600;
pub const DEFAULT_READY_INTERVAL_MS: u64 = 500;
pub const MIN_READY_INTERVAL_MS: u64 = 50;
pub const MAX_READY_INTERVAL_MS: u64 = 60_000;
pub const DEFAULT_TAIL_LINES: u64 = 200;
pub const MAX_TAIL_LINES: u64 = 100_000;
pub const DEFAULT_STOP_GRACE_S: u64 = 5;
/// The stop waits this long at most between TERM and KILL (the whole stop must fit one guest
/// call's deadline).
pub const MAX_STOP_GRACE_S: u64 = 30;
/// Restarts a service with `--restart on-failure` gets before it is left `failed`.
pub const MAX_RESTARTS: u32 = 5;
/// Ports one service may publish.
pub const MAX_SERVICE_PORTS: usize = 8;
/// Service records kept per workspace (finished ones beyond it are forgotten, oldest first).
const MAX_RECORDS: usize = 64;
/// Longest readiness file path or probe command.
const MAX_PROBE_BYTES: usize = 4096;
/// Lines of the log tail an error for a failed start carries.
const ERROR_TAIL_LINES: u64 = 8;

/// What to restart on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub enum RestartPolicy {
    /// Never: an exited service stays exited.
    #[default]
    #[serde(rename = "no")]
    No,
    /// After a failing exit (a non-zero status or a signal), up to `MAX_RESTARTS` times; then
    /// it is left `failed`.
    #[serde(rename = "on-failure")]
    OnFailure,
}

impl RestartPolicy {
    /// Parse a policy name (`no` or `on-failure`).
    pub fn parse(s: &str) -> Result<RestartPolicy> {
        match s {
            "no" => Ok(RestartPolicy::No),
            "on-failure" => Ok(RestartPolicy::OnFailure),
            other => {
                Err(Error::invalid(format!("unknown restart policy '{}'", clip(other, 40)))
                    .hint("use no or on-failure"))
            }
        }
    }

    /// The policy's name, as `--restart` takes it.
    pub fn as_str(self) -> &'static str {
        match self {
            RestartPolicy::No => "no",
            RestartPolicy::OnFailure => "on-failure",
        }
    }
}

/// How a service is checked for readiness, as given on the command line or by a model: at
/// most one of the four.
#[derive(Debug, Clone, Default)]
pub struct ReadinessArgs {
    /// Ready once this file exists (a relative path is taken from the service's working directory).
    pub file: Option<String>,
    /// `HOST:PORT`, HOST an IP address or `localhost`.
    pub tcp: Option<String>,
    /// `http://HOST[:PORT]/PATH`, HOST an IP address or `localhost`.
    pub http: Option<String>,
    /// Ready once this shell command exits 0 in the guest.
    pub command: Option<String>,
}

impl ReadinessArgs {
    /// The one readiness check given, checked; more than one is an error.
    pub fn parse(&self) -> Result<Option<Readiness>> {
        let given = [&self.file, &self.tcp, &self.http, &self.command].iter().filter(|o| o.is_some()).count();
        if given > 1 {
            return Err(Error::invalid("give at most one readiness check")
                .hint("one of --ready-file, --ready-tcp, --ready-http, --ready-command"));
        }
        let short = |what: &str, s: &str| {
            if s.is_empty() || s.len() > MAX_PROBE_BYTES || s.contains('\0') {
                Err(Error::invalid(format!("{what} must be 1-{MAX_PROBE_BYTES} bytes without NUL")))
            } else {
                Ok(())
            }
        };
        if let Some(p) = &self.file {
            short("the readiness file", p)?;
            return Ok(Some(Readiness::File { path: p.clone() }));
        }
        if let Some(t) = &self.tcp {
            let (ip, port) = pyro_proto::split_host_port(t, 0).map_err(|e| {
                Error::invalid(format!("invalid readiness target '{}': {e}", clip(t, 80)))
                    .hint("use HOST:PORT with an IP address or localhost, e.g. 127.0.0.1:8080")
            })?;
            return Ok(Some(Readiness::Tcp { host: ip.to_string(), port }));
        }
        if let Some(u) = &self.http {
            pyro_proto::parse_probe_url(u).map_err(|e| {
                Error::invalid(e).hint("use http://HOST[:PORT]/PATH, e.g. http://127.0.0.1:8080/health")
            })?;
            return Ok(Some(Readiness::Http { url: u.clone() }));
        }
        if let Some(c) = &self.command {
            short("the readiness command", c)?;
            return Ok(Some(Readiness::Command { command: c.clone() }));
        }
        Ok(None)
    }
}

/// `service start`'s options.
#[derive(Debug, Clone)]
pub struct ServiceOptions {
    /// The service's name, unique among the workspace's running services.
    pub name: String,
    /// The command: an argv vector, or one string for /bin/sh -c.
    pub command: Command,
    /// Working directory (in /workspace; default /workspace).
    pub cwd: Option<String>,
    /// How the agent decides the service is ready; none: ready once started.
    pub readiness: Option<Readiness>,
    /// Seconds to wait for readiness before the start fails.
    pub ready_timeout_s: u64,
    /// Milliseconds between readiness probes.
    pub ready_interval_ms: u64,
    /// Whether the agent restarts the service when it exits.
    pub restart: RestartPolicy,
    /// Extra environment for the process.
    pub env: Vec<(String, String)>,
    /// Workspace secrets to put in the process's environment (`SECRET[=ENV]`).
    pub secret_env: Vec<crate::SecretEnv>,
    /// Guest ports to publish on the host's 127.0.0.1 (the workspace needs the policy
    /// egress+published-ports).
    pub publish: Vec<PortSpec>,
}

impl ServiceOptions {
    /// A service `name` running `command` in /workspace, with no readiness check, no restarts and
    /// the default timeouts.
    pub fn new(name: impl Into<String>, command: Command) -> ServiceOptions {
        ServiceOptions {
            name: name.into(),
            command,
            cwd: None,
            readiness: None,
            ready_timeout_s: DEFAULT_READY_TIMEOUT_S,
            ready_interval_ms: DEFAULT_READY_INTERVAL_MS,
            restart: RestartPolicy::No,
            env: Vec::new(),
            secret_env: Vec::new(),
            publish: Vec::new(),
        }
    }
}

/// A service as callers see it.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ServiceInfo {
    /// The workspace (its id).
    pub workspace_id: String,
    /// The service's name.
    pub name: String,
    /// starting, ready, exited, failed, stopped, lost (its VM restarted or stopped), or paused
    /// (the workspace is stopped with its memory saved).
    pub state: String,
    /// The command as run, on one line.
    pub command: String,
    /// The working directory it runs in.
    pub cwd: String,
    /// The readiness check (`http http://...`, `tcp 127.0.0.1:80`, `file PATH`, `command ...`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub readiness: Option<String>,
    /// The last readiness probe's result.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_probe: Option<String>,
    /// The process id in the guest while it runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    /// Its exit code, once it exited.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// The signal that ended it, if one did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    /// Why it is no longer running.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_reason: Option<String>,
    /// Whether it is restarted when it exits.
    pub restart: RestartPolicy,
    /// How many times it was restarted.
    pub restarts: u32,
    /// When it was (last) started, in seconds since the Unix epoch.
    pub started_at: u64,
    /// When it became ready, in seconds since the Unix epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ready_at: Option<u64>,
    /// When it ended, in seconds since the Unix epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<u64>,
    /// Bytes it wrote to stdout in all.
    pub stdout_bytes: u64,
    /// Bytes it wrote to stderr in all.
    pub stderr_bytes: u64,
    /// Log bytes that fell out of the bounded rings (1 MiB per stream).
    pub log_dropped_bytes: u64,
    /// Its guest ports published on the host's 127.0.0.1; absent when none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub published_ports: Vec<PublishedPort>,
    /// Set when the VM had stopped and was booted again for this call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm_restarted: Option<String>,
}

impl ServiceInfo {
    fn live(&self) -> bool {
        matches!(self.state.as_str(), "starting" | "ready")
    }

    fn from_guest(id: &str, s: &ServiceState, restart: RestartPolicy, published: Vec<PublishedPort>) -> ServiceInfo {
        let now_ms = (crate::clock::now_ns() / 1_000_000) as u64;
        let at = |ago: u64| now_ms.saturating_sub(ago) / 1000;
        ServiceInfo {
            workspace_id: id.to_string(),
            name: s.name.clone(),
            state: s.state.as_str().into(),
            command: clip(&s.command, 2000),
            cwd: clip(&s.cwd, 4096),
            readiness: s.readiness.as_ref().map(|r| clip(&r.display(), 300)),
            last_probe: s.last_probe.as_ref().map(|p| clip(p, 300)),
            pid: s.pid,
            exit_code: s.exit_code,
            signal: s.signal,
            stop_reason: s.stop_reason.as_ref().map(|p| clip(p, 400)),
            restart,
            restarts: s.restarts,
            started_at: at(s.started_ago_ms),
            ready_at: s.ready_ago_ms.map(at),
            ended_at: s.ended_ago_ms.map(at),
            stdout_bytes: s.stdout_bytes,
            stderr_bytes: s.stderr_bytes,
            log_dropped_bytes: s.stdout_dropped.saturating_add(s.stderr_dropped),
            published_ports: published,
            vm_restarted: None,
        }
    }
}

/// `service list`: the workspace's services, oldest start first.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ServiceList {
    /// The workspace (its id).
    pub workspace_id: String,
    /// How many services are listed.
    pub count: usize,
    /// The services, oldest start first.
    pub services: Vec<ServiceInfo>,
}

/// `service logs`: the end of each stream's ring.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ServiceLogs {
    /// The workspace (its id).
    pub workspace_id: String,
    /// The service's name.
    pub name: String,
    /// The service's state, as in `ServiceInfo::state`.
    pub state: String,
    /// The end of its stdout ring, as text.
    pub stdout: String,
    /// The end of its stderr ring, as text.
    pub stderr: String,
    /// Bytes the service wrote to stdout in all.
    pub stdout_bytes: u64,
    /// Bytes the service wrote to stderr in all.
    pub stderr_bytes: u64,
    /// Bytes that fell out of the rings (1 MiB per stream).
    pub log_dropped_bytes: u64,
}

/// A supervisor socket of a running VM, without booting one.
fn running_client(w: &Workspaces<'_>, id: &str) -> Option<Client> {
    Client::connect(&w.paths().vms().join(id).join("supervisor.sock")).ok()
}

/// The running guest's boot id and services, or None when its VM is not running.
fn guest_services(w: &Workspaces<'_>, id: &str, name: Option<&str>) -> Option<(String, Vec<ServiceState>)> {
    let mut c = running_client(w, id)?;
    match c.call(&Request::ServiceStatus { name: name.map(String::from) }).ok()? {
        Reply::ServiceList { boot_id, services } => Some((boot_id, services)),
        _ => None,
    }
}

fn check_name(name: &str) -> Result<()> {
    if !pyro_proto::valid_service_name(name) {
        return Err(Error::invalid(format!("invalid service name '{}'", clip(name, 80)))
            .hint("1-64 characters of letters, digits, '.', '_' or '-', starting with a letter or digit"));
    }
    Ok(())
}

fn db_err(e: rusqlite::Error) -> Error {
    Error::internal(format!("workspace database: {e}"))
}

/// A service's record: the boot it was started in and its last observed state.
struct Record {
    boot_id: String,
    info: ServiceInfo,
}

impl Workspaces<'_> {
    fn records(&self, id: &str) -> Result<Vec<Record>> {
        let mut st = self
            .store
            .conn
            .prepare("SELECT boot_id, info FROM services WHERE workspace_id = ?1 ORDER BY started_at, rowid")
            .map_err(db_err)?;
        let rows = st
            .query_map([id], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
            .map_err(db_err)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(db_err)?;
        Ok(rows
            .into_iter()
            .filter_map(|(boot_id, info)| serde_json::from_str(&info).ok().map(|info| Record { boot_id, info }))
            .collect())
    }

    fn save(&mut self, boot_id: &str, info: &ServiceInfo) -> Result<()> {
        self.store
            .conn
            .execute(
                "INSERT INTO services (workspace_id, name, boot_id, started_at, info) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (workspace_id, name) DO UPDATE SET boot_id = ?3, started_at = ?4, info = ?5",
                params![info.workspace_id, info.name, boot_id, info.started_at, serde_json::to_string(info).unwrap()],
            )
            .map_err(db_err)?;
        Ok(())
    }

    /// Keep at most MAX_RECORDS per workspace: finished ones go first, oldest first.
    fn prune_records(&mut self, id: &str) -> Result<()> {
        let recs = self.records(id)?;
        let extra = recs.len().saturating_sub(MAX_RECORDS);
        for r in recs.iter().filter(|r| !r.info.live()).take(extra) {
            self.store
                .conn
                .execute("DELETE FROM services WHERE workspace_id = ?1 AND name = ?2", params![id, r.info.name])
                .map_err(db_err)?;
        }
        Ok(())
    }

    /// Record what was observed of one service, with an event for each transition.
    fn observed(&mut self, boot_id: &str, old: Option<&ServiceInfo>, new: &ServiceInfo) -> Result<()> {
        let before = old.map(|o| o.state.as_str()).unwrap_or("");
        if before != new.state {
            let change = ServiceChange {
                name: new.name.clone(),
                state: new.state.clone(),
                exit_code: new.exit_code,
                reason: new.stop_reason.clone(),
                restarts: new.restarts,
            };
            let event = match new.state.as_str() {
                "ready" => Some(WorkspaceEvent::ServiceReady(change)),
                "exited" => Some(WorkspaceEvent::ServiceExit(change)),
                "failed" | "lost" => Some(WorkspaceEvent::ServiceFailure(change)),
                "stopped" => Some(WorkspaceEvent::ServiceStop(change)),
                _ => None,
            };
            if let Some(event) = event {
                self.store.event(&new.workspace_id, &event)?;
            }
        }
        if old.is_none_or(|o| serde_json::to_value(o).ok() != serde_json::to_value(new).ok()) {
            self.save(boot_id, new)?;
        }
        Ok(())
    }

    /// Every recorded service of workspace `id` (or the one named), checked against the guest.
    fn observe(&mut self, id: &str, name: Option<&str>) -> Result<Vec<ServiceInfo>> {
        let recs: Vec<Record> =
            self.records(id)?.into_iter().filter(|r| name.is_none_or(|n| r.info.name == n)).collect();
        if recs.is_empty() {
            return Ok(Vec::new());
        }
        let guest = guest_services(self, id, name);
        let saved = super::stop::memory_saved(&super::base::ws_dir(self.paths(), id));
        let mut out = Vec::new();
        for rec in recs {
            let old = &rec.info;
            let new = match &guest {
                Some((boot, list)) if *boot == rec.boot_id => match list.iter().find(|s| s.name == old.name) {
                    Some(s) => ServiceInfo::from_guest(id, s, old.restart, old.published_ports.clone()),
                    None => lost(old, "the guest agent no longer knows it"),
                },
                Some(_) => {
                    lost(old, "its VM restarted since it started (a reset, or a VM that stopped and booted again)")
                }
                // Stopped with its memory saved: the service goes on at `start`.
                None if old.live() && saved => {
                    out.push(ServiceInfo {
                        state: "paused".into(),
                        stop_reason: Some("the workspace is stopped with its memory saved; `start` resumes it".into()),
                        ..old.clone()
                    });
                    continue;
                }
                None => lost(old, "its VM is not running"),
            };
            self.observed(&rec.boot_id, Some(old), &new)?;
            out.push(new);
        }
        Ok(out)
    }

    fn one(&mut self, id: &str, name: &str) -> Result<ServiceInfo> {
        self.observe(id, Some(name))?.pop().ok_or_else(|| {
            Error::not_found(format!("no service '{}' in workspace {id}", clip(name, 80)))
                .hint("`pyro workspace service list ID` shows its services")
        })
    }

    /// Start a service and wait until it is ready (its readiness check passes; at once without
    /// one). A service that exits first, or is not ready in time, is an error carrying the
    /// last probe result and the end of its output; the agent has stopped it by then.
    pub fn service_start(&mut self, key: &str, o: &ServiceOptions) -> Result<ServiceInfo> {
        check_name(&o.name)?;
        crate::limits::validate_command(&o.command)?;
        crate::limits::validate_env(&o.env)?;
        crate::error::in_range("ready_timeout_seconds", o.ready_timeout_s, 1, MAX_READY_TIMEOUT_S)?;
        crate::error::in_range("ready_interval_ms", o.ready_interval_ms, MIN_READY_INTERVAL_MS, MAX_READY_INTERVAL_MS)?;
        guest_path(o.cwd.as_deref().unwrap_or("/workspace"))?;
        // Re-check a readiness check built by hand (the CLI and MCP build it through
        // `ReadinessArgs`, which checks too).
        let args = match &o.readiness {
            Some(Readiness::File { path }) => ReadinessArgs { file: Some(path.clone()), ..Default::default() },
            Some(Readiness::Tcp { host, port }) => {
                let host = if host.contains(':') { format!("[{host}]") } else { host.clone() };
                ReadinessArgs { tcp: Some(format!("{host}:{port}")), ..Default::default() }
            }
            Some(Readiness::Http { url }) => ReadinessArgs { http: Some(url.clone()), ..Default::default() },
            Some(Readiness::Command { command }) => {
                ReadinessArgs { command: Some(command.clone()), ..Default::default() }
            }
            None => ReadinessArgs::default(),
        };
        args.parse()?;
        let r = self.resolve(key)?;
        self.check_publish(&r, &o.publish)?;
        if let Some(live) = self.observe(&r.id, Some(&o.name))?.into_iter().find(|s| s.live()) {
            return Err(Error::new(Code::Conflict, format!("service '{}' is already {}", o.name, live.state))
                .hint("stop it first, or choose another name"));
        }
        let mut env = o.env.clone();
        env.extend(self.secret_env(&r.id, &o.secret_env)?);
        let redactor = self.redactor(&r.id)?;
        self.host.cancel_token().check("service start")?;
        self.service_start_in(&r, o, env).map_err(|e| redactor.redact_error(e))
    }

    /// `service_start` once its arguments are checked; errors may quote the service's output
    /// (the caller redacts secrets from them).
    fn service_start_in(
        &mut self,
        r: &super::store::Row,
        o: &ServiceOptions,
        env: Vec<(String, String)>,
    ) -> Result<ServiceInfo> {
        let cwd = guest_path(o.cwd.as_deref().unwrap_or("/workspace"))?;
        let (mut client, restarted) = self.connect(r)?;
        let spec = ServiceSpec {
            name: o.name.clone(),
            command: o.command.clone(),
            cwd: Some(cwd),
            env,
            readiness: o.readiness.clone(),
            ready_timeout_ms: o.ready_timeout_s * 1000,
            ready_interval_ms: o.ready_interval_ms,
            restart_on_failure: o.restart == RestartPolicy::OnFailure,
            max_restarts: MAX_RESTARTS,
            stop_grace_ms: DEFAULT_STOP_GRACE_S * 1000,
        };
        let (boot_id, state) = match client.call(&Request::ServiceStart(spec))? {
            Reply::ServiceReply { boot_id, service } => (boot_id, service),
            _ => return Err(Error::guest("the guest sent a malformed reply to a service start")),
        };
        let mut info = ServiceInfo::from_guest(&r.id, &state, o.restart, Vec::new());
        self.save(&boot_id, &info)?;
        self.store.event(
            &r.id,
            &WorkspaceEvent::ServiceStart {
                name: o.name.clone(),
                command: clip(&info.command, 200),
                readiness: info.readiness.clone(),
            },
        )?;
        self.prune_records(&r.id)?;
        // Ports next: a port that cannot be published stops the service again.
        let mut published = Vec::new();
        for p in &o.publish {
            match publish(&mut client, p) {
                Ok(pp) => published.push(pp),
                Err(e) => {
                    let _ = self.service_stop(&r.id, &o.name, Some(0));
                    return Err(e);
                }
            }
        }
        if !published.is_empty() {
            info.published_ports = published;
            self.save(&boot_id, &info)?;
        }
        let info = self.wait_ready(r, &o.name, o, &boot_id, &mut client)?;
        Ok(ServiceInfo { vm_restarted: restarted, ..info })
    }

    /// Ports need the policy, free host ports and at most MAX_SERVICE_PORTS distinct guest ports.
    fn check_publish(&self, r: &Row, ports: &[PortSpec]) -> Result<()> {
        if ports.is_empty() {
            return Ok(());
        }
        if r.network.options.policy != NetworkPolicy::EgressPublishedPorts {
            return Err(Error::invalid(
                "publishing a port needs a workspace with the network policy egress+published-ports",
            )
            .hint("create the workspace with --network-policy egress+published-ports"));
        }
        if ports.len() > MAX_SERVICE_PORTS {
            return Err(Error::limit(format!("a service publishes at most {MAX_SERVICE_PORTS} ports")));
        }
        let opts = crate::net::NetworkOptions {
            policy: NetworkPolicy::EgressPublishedPorts,
            publish: ports.to_vec(),
            allow_domains: Vec::new(),
        };
        let mut checked = opts.clone();
        checked.validate()?;
        // A port the workspace already publishes for that guest port is reused, not bound again.
        let fresh: Vec<PortSpec> = ports
            .iter()
            .filter(|p| !r.network.published.iter().any(|q| q.guest_port == p.guest_port && q.host_port == p.host_port))
            .copied()
            .collect();
        crate::net::NetworkOptions { publish: fresh, ..opts }.check_ports_free()
    }

    /// Poll the service until it is ready, has ended, or the deadline (the guest enforces the
    /// readiness timeout; ours is a backstop) passes; progress goes to the call's callback.
    fn wait_ready(
        &mut self,
        r: &Row,
        name: &str,
        o: &ServiceOptions,
        boot_id: &str,
        client: &mut Client,
    ) -> Result<ServiceInfo> {
        let started = Instant::now();
        let backstop = Duration::from_secs(o.ready_timeout_s + DEFAULT_STOP_GRACE_S + 30);
        let every = Duration::from_millis(o.ready_interval_ms.clamp(50, 250));
        let progress = self.host.progress();
        // A line when the probe's result changes, and every 5 s (an MCP client's idle clock).
        let mut last_line = String::new();
        let mut last_at = Instant::now();
        loop {
            let old = self.records(&r.id)?.into_iter().find(|x| x.info.name == name).map(|x| x.info);
            let state = match client.call(&Request::ServiceStatus { name: Some(name.to_string()) })? {
                Reply::ServiceList { services, .. } => services.into_iter().find(|s| s.name == name),
                _ => return Err(Error::guest("the guest sent a malformed reply to a service status")),
            };
            let Some(state) = state else {
                return Err(Error::guest(format!("the guest lost service '{name}' while it started")));
            };
            let published = old.as_ref().map(|o| o.published_ports.clone()).unwrap_or_default();
            let info = ServiceInfo::from_guest(&r.id, &state, o.restart, published);
            self.observed(boot_id, old.as_ref(), &info)?;
            match info.state.as_str() {
                "ready" => return Ok(info),
                "starting" => {}
                _ => return Err(self.start_failed(&r.id, client, &info)),
            }
            let line = format!(
                "service {name}: starting{}",
                info.last_probe.as_ref().map(|p| format!(" (last probe: {})", clip(p, 120))).unwrap_or_default()
            );
            if line != last_line || last_at.elapsed() >= Duration::from_secs(5) {
                progress(&format!("{line}, {} s", started.elapsed().as_secs()));
                last_line = line;
                last_at = Instant::now();
            }
            if self.host.cancel_token().is_cancelled() {
                let _ = self.service_stop(&r.id, name, Some(0));
                return Err(Error::new(
                    Code::Cancelled,
                    format!("service start cancelled; service '{name}' was stopped"),
                ));
            }
            if started.elapsed() > backstop {
                let _ = self.service_stop(&r.id, name, Some(0));
                return Err(Error::new(
                    Code::Timeout,
                    format!("service '{name}' did not become ready; it was stopped"),
                ));
            }
            std::thread::sleep(every);
        }
    }

    /// The error for a service that ended before it was ready: why, the last probe, and the
    /// end of its output (one line).
    fn start_failed(&mut self, _id: &str, client: &mut Client, info: &ServiceInfo) -> Error {
        let tail = match client.call_data(&Request::ServiceLogs {
            name: info.name.clone(),
            tail_lines: ERROR_TAIL_LINES,
            all: false,
        }) {
            Ok((Reply::ServiceLogData { stdout_len, stderr_len, .. }, bytes))
                if stdout_len.checked_add(stderr_len) == Some(bytes.len() as u64) =>
            {
                let text = String::from_utf8_lossy(&bytes);
                let lines: Vec<&str> = text.lines().map(str::trim_end).filter(|l| !l.is_empty()).collect();
                let keep = lines.len().saturating_sub(ERROR_TAIL_LINES as usize);
                lines[keep..].join(" | ")
            }
            _ => String::new(),
        };
        let why = info.stop_reason.clone().unwrap_or_else(|| info.state.clone());
        let code = if why.starts_with("not ready within") { Code::Timeout } else { Code::State };
        let mut msg = format!("service '{}' {}: {why}", info.name, info.state);
        if let Some(p) = info.last_probe.as_ref().filter(|_| !why.contains("last probe")) {
            msg.push_str(&format!("; last probe: {p}"));
        }
        msg.push_str(&format!("; log tail: {}", if tail.is_empty() { "(empty)".into() } else { clip(&tail, 800) }));
        Error::new(code, msg).hint("`pyro workspace service logs ID NAME` shows its output")
    }

    /// Every service of the workspace, oldest start first (a VM that is not running is not
    /// booted; its services are lost).
    pub fn service_list(&mut self, key: &str) -> Result<ServiceList> {
        let r = self.resolve(key)?;
        let services = self.observe(&r.id, None)?;
        Ok(ServiceList { workspace_id: r.id, count: services.len(), services })
    }

    /// One service's state, checked against the guest agent when the VM runs (`lost` when
    /// its VM is gone or restarted, `paused` while the workspace is stopped with its memory).
    pub fn service_status(&mut self, key: &str, name: &str) -> Result<ServiceInfo> {
        check_name(name)?;
        let r = self.resolve(key)?;
        self.one(&r.id, name)
    }

    /// The last `tail_lines` lines of each stream (default 200), or all the rings hold.
    pub fn service_logs(&mut self, key: &str, name: &str, tail_lines: Option<u64>, all: bool) -> Result<ServiceLogs> {
        check_name(name)?;
        let tail_lines =
            crate::error::in_range("tail_lines", tail_lines.unwrap_or(DEFAULT_TAIL_LINES), 0, MAX_TAIL_LINES)?;
        let r = self.resolve(key)?;
        let info = self.one(&r.id, name)?;
        if info.state == "lost" {
            return Err(Error::state(format!(
                "service '{name}' was lost ({}); its logs went with its VM",
                info.stop_reason.as_deref().unwrap_or("its VM restarted")
            )));
        }
        let mut c = running_client(self, &r.id).ok_or_else(|| Error::guest("the workspace's VM is not running"))?;
        let (reply, bytes) = c.call_data(&Request::ServiceLogs { name: name.into(), tail_lines, all })?;
        let Reply::ServiceLogData { service, stdout_len, stderr_len } = reply else {
            return Err(Error::guest("the guest sent a malformed reply to a service logs call"));
        };
        if stdout_len.checked_add(stderr_len) != Some(bytes.len() as u64) {
            return Err(Error::guest("the guest sent a malformed reply to a service logs call (lengths)"));
        }
        let (out, err) = bytes.split_at(stdout_len as usize);
        let redactor = self.redactor(&r.id)?;
        Ok(ServiceLogs {
            workspace_id: r.id,
            name: name.into(),
            state: service.state.as_str().into(),
            stdout: String::from_utf8_lossy(&redactor.redact(out)).into_owned(),
            stderr: String::from_utf8_lossy(&redactor.redact(err)).into_owned(),
            stdout_bytes: service.stdout_bytes,
            stderr_bytes: service.stderr_bytes,
            log_dropped_bytes: service.stdout_dropped.saturating_add(service.stderr_dropped),
        })
    }

    /// Stop a service: TERM to its process group, KILL after `grace_s` (default 5, at most
    /// 30); returns once nothing of it runs. Stopping a service that already ended returns
    /// its state.
    pub fn service_stop(&mut self, key: &str, name: &str, grace_s: Option<u64>) -> Result<ServiceInfo> {
        check_name(name)?;
        let grace_s =
            crate::error::in_range("grace_seconds", grace_s.unwrap_or(DEFAULT_STOP_GRACE_S), 0, MAX_STOP_GRACE_S)?;
        let r = self.resolve(key)?;
        let before = self.one(&r.id, name)?;
        if !before.live() {
            return Ok(before);
        }
        let rec = self.records(&r.id)?.into_iter().find(|x| x.info.name == name);
        let Some(rec) = rec else { return Ok(before) };
        let mut c = running_client(self, &r.id).ok_or_else(|| Error::guest("the workspace's VM is not running"))?;
        let state = match c.call(&Request::ServiceStop { name: name.into(), grace_ms: grace_s * 1000 })? {
            Reply::ServiceReply { service, .. } => service,
            _ => return Err(Error::guest("the guest sent a malformed reply to a service stop")),
        };
        let info = ServiceInfo::from_guest(&r.id, &state, rec.info.restart, rec.info.published_ports.clone());
        self.observed(&rec.boot_id, Some(&rec.info), &info)?;
        Ok(info)
    }

    /// After a resume from saved memory: the services run on in the guest, but the host ports
    /// they published went with the old supervisor. Publish them again on the same host
    /// ports, or for a fork (`fresh_ports`: its source still holds those) on free ones, which
    /// are recorded; one that cannot be is recorded on the service (which goes on).
    pub(super) fn republish_services(&mut self, id: &str, client: &mut Client, fresh_ports: bool) {
        let Ok(recs) = self.records(id) else { return };
        for rec in recs.into_iter().filter(|r| r.info.live() && !r.info.published_ports.is_empty()) {
            let mut info = rec.info.clone();
            for p in info.published_ports.iter_mut() {
                let host_port = if fresh_ports { 0 } else { p.host_port };
                match publish(client, &PortSpec { host_port, guest_port: p.guest_port }) {
                    Ok(now) => *p = now,
                    Err(e) => {
                        info.last_probe =
                            Some(format!("port {} not published again after start: {}", p.guest_port, e.message))
                    }
                }
            }
            if info.published_ports != rec.info.published_ports || info.last_probe != rec.info.last_probe {
                let _ = self.save(&rec.boot_id, &info);
            }
        }
    }

    /// A fork's service records: those of `from`, as the fork's (its guest runs them too when
    /// it resumes from the source's memory; a fork that boots finds them lost, as any boot).
    pub(super) fn copy_services(&mut self, from: &str, to: &str) -> Result<()> {
        for rec in self.records(from)? {
            let info = ServiceInfo { workspace_id: to.to_string(), ..rec.info };
            self.save(&rec.boot_id, &info)?;
        }
        Ok(())
    }

    /// Services for the summary (no VM is booted for it).
    pub fn service_summary(&mut self, id: &str) -> Result<Vec<ServiceInfo>> {
        self.observe(id, None)
    }
}

/// A recorded service whose VM no longer holds it: lost if it was live, else as it ended.
fn lost(old: &ServiceInfo, why: &str) -> ServiceInfo {
    if !old.live() {
        return old.clone();
    }
    ServiceInfo {
        state: "lost".into(),
        pid: None,
        stop_reason: Some(why.into()),
        ended_at: Some(now_s()),
        vm_restarted: None,
        ..old.clone()
    }
}

/// Ask the supervisor to publish one more port.
fn publish(client: &mut Client, p: &PortSpec) -> Result<PublishedPort> {
    match client.call(&Request::PublishPort { guest_port: p.guest_port, host_port: p.host_port })? {
        Reply::PortPublished { host, host_port, guest_port } => {
            Ok(PublishedPort { host, host_port, guest_port, protocol: "tcp".into() })
        }
        _ => Err(Error::guest("the supervisor sent a malformed reply to a port publish")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_args_take_one_check() {
        let r = |f: fn(&mut ReadinessArgs)| {
            let mut a = ReadinessArgs::default();
            f(&mut a);
            a.parse()
        };
        assert_eq!(r(|_| {}).unwrap(), None);
        assert_eq!(
            r(|a| a.tcp = Some("localhost:8080".into())).unwrap(),
            Some(Readiness::Tcp { host: "127.0.0.1".into(), port: 8080 })
        );
        assert!(r(|a| a.http = Some("http://127.0.0.1:8080/".into())).unwrap().is_some());
        let both = r(|a| {
            a.file = Some("x".into());
            a.command = Some("true".into());
        });
        assert!(both.unwrap_err().message.contains("at most one"));
        for bad in ["8080", "db:80", "127.0.0.1:0", "127.0.0.1:99999"] {
            let e = r_tcp(bad).unwrap_err();
            assert_eq!(e.code, Code::InvalidArgument, "{bad}");
        }
        assert!(r(|a| a.http = Some("https://127.0.0.1/".into())).is_err());
        assert!(r(|a| a.file = Some(String::new())).is_err());
    }

    fn r_tcp(s: &str) -> Result<Option<Readiness>> {
        ReadinessArgs { tcp: Some(s.into()), ..Default::default() }.parse()
    }

    #[test]
    fn lost_only_replaces_live_states() {
        let mut s = ServiceInfo {
            workspace_id: "w".into(),
            name: "web".into(),
            state: "ready".into(),
            command: "x".into(),
            cwd: "/workspace".into(),
            readiness: None,
            last_probe: None,
            pid: Some(7),
            exit_code: None,
            signal: None,
            stop_reason: None,
            restart: RestartPolicy::No,
            restarts: 0,
            started_at: 1,
            ready_at: Some(1),
            ended_at: None,
            stdout_bytes: 0,
            stderr_bytes: 0,
            log_dropped_bytes: 0,
            published_ports: vec![],
            vm_restarted: None,
        };
        let l = lost(&s, "gone");
        assert_eq!((l.state.as_str(), l.pid, l.stop_reason.as_deref()), ("lost", None, Some("gone")));
        s.state = "stopped".into();
        assert_eq!(lost(&s, "gone").state, "stopped");
        assert_eq!(RestartPolicy::parse("on-failure").unwrap(), RestartPolicy::OnFailure);
        assert!(RestartPolicy::parse("always").is_err());
    }
}

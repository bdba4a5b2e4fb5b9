//! One-shot runs: boot a throwaway VM from an environment, run one command, tear it all down.

use crate::error::Result;
use crate::runtime::Runtime;
use crate::session::{Cleanup, VmSession};
use pyro_proto::{Command, ExecRequest};
use schemars::JsonSchema;
use serde::Serialize;
use std::time::Instant;

pub use crate::limits::{
    validate_command, validate_resources, DEFAULT_MAX_OUTPUT, DEFAULT_MEM_MIB, DEFAULT_TIMEOUT_S, DEFAULT_VCPUS,
    MAX_MEM_MIB, MAX_VCPUS, MIN_MEM_MIB,
};

/// What `run` takes: one command, the environment and VM to run it in, and its bounds. `new` fills
/// in the defaults.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The environment to boot, e.g. `debian:12`.
    pub environment: String,
    /// The command: an argv vector, or one string for /bin/sh -c.
    pub command: Command,
    /// vCPUs of the VM.
    pub vcpus: u32,
    /// Memory of the VM in MiB.
    pub mem_mib: u32,
    /// Seconds before the command's process group is killed.
    pub timeout_s: u64,
    /// Environment variables added to the command's, name and value.
    pub env: Vec<(String, String)>,
    /// Output kept per stream at most, in bytes (head and tail around a marker).
    pub max_output_bytes: u64,
    /// When no guest can boot here, run the command in a bubblewrap sandbox on the host instead of
    /// failing.
    pub allow_host_compat: bool,
    /// The VM's network (default: none). Publishing ports makes no sense for a one-shot run.
    pub network: crate::net::NetworkOptions,
}

impl RunOptions {
    /// A run of `command` in `environment` with the default VM, timeout and output cap, and no
    /// network.
    pub fn new(environment: impl Into<String>, command: Command) -> Self {
        RunOptions {
            environment: environment.into(),
            command,
            vcpus: DEFAULT_VCPUS,
            mem_mib: DEFAULT_MEM_MIB,
            timeout_s: DEFAULT_TIMEOUT_S,
            env: vec![],
            max_output_bytes: DEFAULT_MAX_OUTPUT,
            allow_host_compat: false,
            network: Default::default(),
        }
    }
}

/// `run`: one command in a throwaway VM.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct RunResult {
    /// The VM it ran in (deleted by the time the result is returned: see `cleanup`).
    pub vm_id: String,
    /// The environment it booted.
    pub environment: String,
    /// The installed version of that environment.
    pub environment_version: String,
    /// The command as run, on one line.
    pub command: String,
    /// The command's exit code (124 when the timeout killed it, 128+N for signal N).
    pub exit_code: i32,
    /// The timeout killed the command.
    pub timed_out: bool,
    /// The caller cancelled it; the guest killed its process group.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub cancelled: bool,
    /// Command run time inside the guest.
    pub duration_ms: u64,
    /// QEMU start to guest agent ready.
    pub boot_ms: u64,
    /// `cold` (a kernel boot) or `template` (a warm template restored), with why a template
    /// was not used when one should have been.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_from: Option<crate::vm::template::StartedFrom>,
    /// The whole call, environment lookup to teardown.
    pub total_ms: u64,
    /// `guest_vm`, or `host_compat` when it ran in the host sandbox (`allow_host_compat`).
    pub execution_mode: String,
    /// The accelerator the VM ran under (`kvm` or `tcg`; `none` on the host).
    pub accelerator: String,
    /// What the command wrote to stdout, as text (invalid UTF-8 replaced), head and tail when
    /// capped.
    #[serde(serialize_with = "crate::text::lossy")]
    #[schemars(with = "String")]
    pub stdout: Vec<u8>,
    /// What the command wrote to stderr, as text (invalid UTF-8 replaced), head and tail when
    /// capped.
    #[serde(serialize_with = "crate::text::lossy")]
    #[schemars(with = "String")]
    pub stderr: Vec<u8>,
    /// stdout was longer than the cap; its middle was cut.
    pub stdout_truncated: bool,
    /// stderr was longer than the cap; its middle was cut.
    pub stderr_truncated: bool,
    /// Bytes the command wrote to stdout in all.
    pub stdout_total_bytes: u64,
    /// Bytes the command wrote to stderr in all.
    pub stderr_total_bytes: u64,
    /// What became of the VM afterwards.
    pub cleanup: Cleanup,
}

/// Validate what a user or model passed: a rejected request starts nothing.
pub fn validate(o: &RunOptions) -> Result<()> {
    crate::env::check_name(&o.environment)?;
    validate_resources(o.vcpus, o.mem_mib)?;
    crate::limits::validate_timeout(o.timeout_s)?;
    crate::limits::validate_output_cap(o.max_output_bytes)?;
    validate_command(&o.command)?;
    if !o.network.publish.is_empty() {
        return Err(crate::error::Error::invalid("a one-shot run cannot publish ports")
            .hint("create a workspace with --network-policy egress+published-ports"));
    }
    o.network.clone().validate()?;
    crate::limits::validate_env(&o.env)
}

/// A progress line for a running guest command.
pub fn exec_progress_line(t: &crate::vm::client::ExecTick) -> String {
    let mut line = format!(
        "exec: running {} s, {} of output",
        t.elapsed_ms / 1000,
        crate::text::bytes(t.stdout_bytes + t.stderr_bytes)
    );
    if !t.last_line.is_empty() {
        line.push_str("; last line: ");
        line.push_str(&t.last_line);
    }
    line
}

/// One command in a throwaway VM. `cancel` stops it (before the boot finishes: the VM is
/// removed and nothing runs; while it runs: the guest kills it and the result says so).
pub fn run(
    rt: &Runtime,
    o: &RunOptions,
    progress: &dyn Fn(&str),
    cancel: &crate::Cancel,
    exec_progress_ms: u64,
) -> Result<RunResult> {
    let started = Instant::now();
    cancel.check("the run")?;
    // Early, before an environment is prepared; `launch` checks again under its lock.
    crate::vm::spare::room_for(&rt.paths, o.mem_mib)?;
    let mut session = VmSession::start_with(rt, &o.environment, o.vcpus, o.mem_mib, &o.network, progress)?;
    cancel.check("the run")?;
    let req = ExecRequest {
        command: o.command.clone(),
        cwd: None,
        env: o.env.clone(),
        timeout_ms: o.timeout_s * 1000,
        max_output_bytes: o.max_output_bytes,
        progress_ms: exec_progress_ms,
    };
    let out = session.exec_watched(req, Some(cancel), &mut |t| progress(&exec_progress_line(t)));
    // Tear down before looking at the result: whatever happened, nothing stays behind.
    let (vm_id, boot_ms, environment) = (session.id.clone(), session.boot_ms, session.environment.clone());
    let started_from = Some(session.started_from.clone());
    let mut cleanup = session.delete();
    cleanup.reason = "run finished; VM, overlay and sockets removed".into();
    let out = out?;
    let r = out.result;
    Ok(RunResult {
        vm_id,
        environment_version: crate::env::installed(&rt.paths, &environment).map(|e| e.version).unwrap_or_default(),
        environment,
        command: o.command.display(),
        exit_code: r.exit_code,
        timed_out: r.timed_out,
        cancelled: r.cancelled,
        duration_ms: r.duration_ms,
        boot_ms,
        started_from,
        total_ms: started.elapsed().as_millis() as u64,
        execution_mode: "guest_vm".into(),
        accelerator: rt.accel.accel.as_str().into(),
        stdout: out.stdout,
        stderr: out.stderr,
        stdout_truncated: r.stdout.truncated,
        stderr_truncated: r.stderr.truncated,
        stdout_total_bytes: r.stdout.total_bytes,
        stderr_total_bytes: r.stderr.total_bytes,
        cleanup,
    })
}

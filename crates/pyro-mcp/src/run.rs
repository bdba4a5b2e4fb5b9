//! One-shot runs: boot a throwaway VM from an environment, run one command, tear it all down.

use crate::error::{in_range, Error, Result};
use crate::runtime::Runtime;
use crate::session::VmSession;
use pyro_proto::{Command, ExecRequest};
use schemars::JsonSchema;
use serde::Serialize;
use std::time::Instant;

pub const DEFAULT_VCPUS: u32 = 1;
pub const DEFAULT_MEM_MIB: u32 = 1024;
pub const DEFAULT_TIMEOUT_S: u64 = 30;
pub const DEFAULT_MAX_OUTPUT: u64 = 1 << 20;
/// Per-stream output cap bounds (the guest keeps head and tail around a marker, so a cap
/// smaller than a marker makes no sense).
pub const MIN_OUTPUT: u64 = 1024;
pub const MAX_OUTPUT: u64 = 1 << 20;
pub const MAX_VCPUS: u32 = 16;
pub const MIN_MEM_MIB: u32 = 256;
pub const MAX_MEM_MIB: u32 = 65536;
pub const MAX_TIMEOUT_S: u64 = 24 * 3600;

#[derive(Debug, Clone)]
pub struct RunOptions {
    pub environment: String,
    pub command: Command,
    pub vcpus: u32,
    pub mem_mib: u32,
    pub timeout_s: u64,
    pub env: Vec<(String, String)>,
    pub max_output_bytes: u64,
    pub allow_host_compat: bool,
}

impl RunOptions {
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
        }
    }
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Cleanup {
    pub vm_id: String,
    pub deleted: bool,
    pub reason: String,
}

/// `run`: one command in a throwaway VM.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct RunResult {
    pub vm_id: String,
    pub environment: String,
    pub environment_version: String,
    pub command: String,
    pub exit_code: i32,
    pub timed_out: bool,
    /// Command run time inside the guest.
    pub duration_ms: u64,
    /// QEMU start to guest agent ready.
    pub boot_ms: u64,
    /// The whole call, environment lookup to teardown.
    pub total_ms: u64,
    pub execution_mode: String,
    pub accelerator: String,
    #[serde(serialize_with = "crate::run::lossy")]
    #[schemars(with = "String")]
    pub stdout: Vec<u8>,
    #[serde(serialize_with = "crate::run::lossy")]
    #[schemars(with = "String")]
    pub stderr: Vec<u8>,
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
    pub stdout_total_bytes: u64,
    pub stderr_total_bytes: u64,
    pub cleanup: Cleanup,
}

/// Serialize captured bytes (command output, file content) as UTF-8 text, replacing invalid
/// sequences: JSON results stay valid whatever the guest printed.
pub fn lossy<S: serde::Serializer>(b: &[u8], s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&String::from_utf8_lossy(b))
}

/// Validate what a user or model passed: a rejected request starts nothing.
pub fn validate(o: &RunOptions) -> Result<()> {
    crate::env::check_name(&o.environment)?;
    validate_resources(o.vcpus, o.mem_mib)?;
    in_range("timeout_seconds", o.timeout_s, 1, MAX_TIMEOUT_S)?;
    in_range("max_output_bytes", o.max_output_bytes, MIN_OUTPUT, MAX_OUTPUT)?;
    validate_command(&o.command)?;
    for (k, v) in &o.env {
        if k.is_empty()
            || k.len() > 128
            || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            || k.starts_with(|c: char| c.is_ascii_digit())
        {
            return Err(Error::invalid(format!(
                "invalid environment variable name '{}'",
                k.chars().take(64).collect::<String>()
            )));
        }
        if v.len() > 64 * 1024 || v.contains('\0') {
            return Err(Error::invalid(format!("environment variable {k} is too long or contains NUL")));
        }
    }
    Ok(())
}

/// vCPU and memory bounds, shared by runs, throwaway VMs and workspaces.
pub fn validate_resources(vcpus: u32, mem_mib: u32) -> Result<()> {
    in_range("vcpu_count", vcpus, 1, MAX_VCPUS)?;
    in_range("mem_mib", mem_mib, MIN_MEM_MIB, MAX_MEM_MIB)?;
    Ok(())
}

pub fn validate_command(c: &Command) -> Result<()> {
    let words: Vec<&String> = match c {
        Command::Argv(v) => v.iter().collect(),
        Command::Shell(s) => vec![s],
    };
    if words.is_empty() || words[0].is_empty() {
        return Err(Error::invalid("empty command")
            .hint("put the command after `--`, e.g. pyro run debian:12 -- git --version"));
    }
    let total: usize = words.iter().map(|w| w.len()).sum();
    if total > 256 * 1024 || words.len() > 4096 {
        return Err(Error::limit("command is too long (max 256 KiB, 4096 words)"));
    }
    if words.iter().any(|w| w.contains('\0')) {
        return Err(Error::invalid("command contains a NUL byte"));
    }
    Ok(())
}

pub fn run(rt: &Runtime, o: &RunOptions, progress: &dyn Fn(&str)) -> Result<RunResult> {
    let started = Instant::now();
    let mut session = VmSession::start(rt, &o.environment, o.vcpus, o.mem_mib, progress)?;
    let req = ExecRequest {
        command: o.command.clone(),
        cwd: None,
        env: o.env.clone(),
        timeout_ms: o.timeout_s * 1000,
        max_output_bytes: o.max_output_bytes,
    };
    let out = session.exec_request(req);
    // Tear down before looking at the result: whatever happened, nothing stays behind.
    let (vm_id, boot_ms, environment) = (session.id.clone(), session.boot_ms, session.environment.clone());
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
        duration_ms: r.duration_ms,
        boot_ms,
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

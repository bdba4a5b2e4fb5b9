//! How many VMs one user may run at once, and how much guest memory they may hold together.
//!
//! Every VM is a supervisor process with a runtime dir `<runtime>/vms/<id>` holding its
//! `spec.json` (the memory it was given) and `supervisor.pid`. `launch` takes
//! `<runtime>/launch.lock`, counts the live ones, refuses a VM over either limit with
//! `limit_exceeded` before anything boots, and records the new supervisor's pid before it lets
//! go of the lock, so two launches at once cannot both take the last slot. The supervisor
//! also records itself as it starts, so one whose launcher was killed before that write is on
//! record all the same.
//!
//! Limits: `PYRO_MAX_VMS` (default 16) and `PYRO_MAX_VM_MEMORY_MIB` (default half the host's
//! RAM). `0` turns a limit off.

use crate::error::{Error, Result};
use std::path::Path;

pub const DEFAULT_MAX_VMS: u64 = 16;

/// The two limits in force (None: no limit).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_vms: Option<u64>,
    pub max_mem_mib: Option<u64>,
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse::<u64>().ok())
}

impl Limits {
    pub fn from_env() -> Limits {
        let max_vms = env_u64("PYRO_MAX_VMS").unwrap_or(DEFAULT_MAX_VMS);
        let max_mem = env_u64("PYRO_MAX_VM_MEMORY_MIB").unwrap_or_else(|| host_mem_mib().map(|m| m / 2).unwrap_or(0));
        Limits { max_vms: (max_vms > 0).then_some(max_vms), max_mem_mib: (max_mem > 0).then_some(max_mem) }
    }
}

/// `MemTotal` from /proc/meminfo, in MiB.
fn host_mem_mib() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}

/// One live VM: the memory it was given.
#[derive(Debug, Clone)]
pub struct LiveVm {
    pub mem_mib: u64,
}

/// The supervisor pid a VM dir records, if that process is alive and is the supervisor of
/// this very dir (a pid reused by another process does not count, and is never signalled).
pub fn supervisor_of(dir: &Path) -> Option<i32> {
    let recorded = std::fs::read_to_string(dir.join("supervisor.pid")).ok().and_then(|s| s.trim().parse::<i32>().ok());
    let from_state = || {
        let st: super::spec::VmState = serde_json::from_slice(&std::fs::read(dir.join("state.json")).ok()?).ok()?;
        Some(st.supervisor_pid as i32)
    };
    let pid = recorded.or_else(from_state)?;
    is_supervisor_of(pid, dir).then_some(pid)
}

/// True when `pid` is a live process of ours running `pyro __supervise DIR`.
pub fn is_supervisor_of(pid: i32, dir: &Path) -> bool {
    if !crate::proc::alive_and_ours(pid) {
        return false;
    }
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else { return false };
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    use std::os::unix::ffi::OsStrExt;
    args.iter().position(|a| *a == b"__supervise").is_some_and(|i| args.get(i + 1) == Some(&dir.as_os_str().as_bytes()))
}

/// The memory a VM was given, from its spec (`-m N`).
fn spec_mem_mib(dir: &Path) -> u64 {
    let Some(spec) =
        std::fs::read(dir.join("spec.json")).ok().and_then(|b| serde_json::from_slice::<super::spec::VmSpec>(&b).ok())
    else {
        return 0;
    };
    spec.args
        .iter()
        .position(|a| a == "-m")
        .and_then(|i| spec.args.get(i + 1))
        .and_then(|m| m.parse().ok())
        .unwrap_or(0)
}

/// Every VM under `vms` whose supervisor is alive.
pub fn live_vms(vms: &Path) -> Vec<LiveVm> {
    let Ok(rd) = std::fs::read_dir(vms) else { return Vec::new() };
    rd.flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| {
            let dir = e.path();
            supervisor_of(&dir)?;
            Some(LiveVm { mem_mib: spec_mem_mib(&dir) })
        })
        .collect()
}

/// Refuse one more VM of `mem_mib` if it would go over a limit (`limit_exceeded`, with the
/// knob to turn in the hint).
pub fn check(vms: &Path, mem_mib: u64, limits: Limits) -> Result<()> {
    let live = live_vms(vms);
    if let Some(max) = limits.max_vms {
        if live.len() as u64 >= max {
            return Err(Error::limit(format!("{} VMs are running, the limit is {max}", live.len()))
                .hint("stop or delete a workspace (`pyro workspace list`), or raise PYRO_MAX_VMS"));
        }
    }
    if let Some(max) = limits.max_mem_mib {
        let used: u64 = live.iter().map(|v| v.mem_mib).sum();
        if used + mem_mib > max {
            return Err(Error::limit(format!(
                "a {mem_mib} MiB VM would bring running VMs to {} MiB of memory, the limit is {max} MiB",
                used + mem_mib
            ))
            .hint("stop or delete a workspace, give it less memory, or raise PYRO_MAX_VM_MEMORY_MIB"));
        }
    }
    Ok(())
}

/// The launch lock (`<runtime>/launch.lock`, beside `vms/` so that dir holds only VMs): held
/// from the count until the new supervisor's pid is on disk.
pub fn lock(runtime: &Path) -> Result<std::fs::File> {
    crate::paths::private_dir(runtime)?;
    crate::lockfile::lock(&runtime.join("launch.lock"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_count_live_supervisors_only() {
        let vms = std::env::temp_dir().join(format!("pyro-quota-{}", std::process::id()));
        let dead = vms.join("dead");
        std::fs::create_dir_all(&dead).unwrap();
        // A dir whose recorded supervisor is not a supervisor (this test process) is not live.
        std::fs::write(dead.join("supervisor.pid"), std::process::id().to_string()).unwrap();
        let l = Limits { max_vms: Some(1), max_mem_mib: Some(100) };
        assert!(check(&vms, 100, l).is_ok());
        let e = check(&vms, 101, l).unwrap_err();
        assert_eq!(e.code, crate::Code::LimitExceeded);
        assert!(e.hint.unwrap().contains("PYRO_MAX_VM_MEMORY_MIB"));
        let e = check(&vms, 1, Limits { max_vms: Some(0), max_mem_mib: None }).unwrap_err();
        assert!(e.hint.unwrap().contains("PYRO_MAX_VMS"));
        std::fs::remove_dir_all(&vms).unwrap();
    }
}

//! Warm spares: one workspace VM restored from a warm template ahead of time, run once and
//! paused, which the next `workspace create` of its environment and shape takes over.
//!
//! Why: under emulation (TCG) a restored guest spends most of its first ~0.3 s translating
//! the kernel and agent code that its first calls run (the identity, the first command):
//! QEMU cannot save its translations with the guest. A spare has run that code already, in
//! the QEMU process that the workspace then keeps. Claiming one is a `cont`, a clock set and
//! the create's usual baseline freeze; without one a create restores the template itself.
//!
//! A spare is a workspace dir with no row (`<data>/workspaces/<id>/`) holding `spare.json`:
//! its disk is `template.qcow2` (a hard link to the template's disk) under `baseline.qcow2`,
//! which the paused VM runs on, and `disk.qcow2`, the live layer made ready (backed by
//! `baseline.qcow2`). Its id, hostname and machine id are its own from the start, and it took
//! fresh host entropy when it was restored: no two spares or workspaces share them.
//!
//! Who does what, and why it is safe:
//! - `pyro __spare ENV VCPUS MEM` (detached, started by a create) prepares one per
//!   environment and shape (at most `MAX_SPARES` in all, only with room in the VM quota for
//!   one more VM besides it), under the dir's lock, and writes `spare.json` last. It then
//!   waits out the spare's life (`PYRO_SPARE_TTL_S`, default 10 min) and removes it if it is
//!   still unclaimed.
//! - A create takes the dir's lock (without waiting: a held lock is someone else's), then
//!   renames `spare.json` to `spare.claimed`: whoever renames owns it. A failure from there on
//!   removes it, as a failed create removes what it made.
//! - The sweep (`recover`) leaves a spare alone while it is valid (unexpired, its supervisor
//!   alive) and removes it otherwise, like any row-less dir whose lock nobody holds.
//! - A launch over the VM quota removes the spares first (`evict_all`): a spare never costs a
//!   user a VM. `env prune` removes them with the templates.
//!
//! `PYRO_SPARES=off` (or templates off) turns spares off; network policies other than `off`
//! never use them (their network is set up when the VM starts).

use super::template::{BaseImage, Shape};
use super::{client::Client, procs};
use crate::error::{Context, Error, Result};
use crate::paths::Paths;
use crate::runtime::Runtime;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// In a spare's dir: it is a spare (see the module doc).
pub(crate) const SPARE: &str = "spare.json";
/// `spare.json` once a create took the spare.
pub(crate) const CLAIMED: &str = "spare.claimed";
/// The template's disk, linked, under a spare's `baseline.qcow2`.
pub(crate) const TEMPLATE_DISK: &str = "template.qcow2";
/// Spares kept at most, all environments and shapes together.
pub(crate) const MAX_SPARES: usize = 2;

/// `spare.json`: what a spare is for.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SpareInfo {
    pub(crate) environment: String,
    /// The installed environment's dir (its digest): a re-pulled environment is another.
    pub(crate) environment_dir: String,
    /// The template it was restored from (`template::key`): a rebuilt template is another.
    pub(crate) template_key: String,
    pub(crate) vcpus: u32,
    pub(crate) mem_mib: u32,
    pub(crate) created_at: u64,
    pub(crate) expires_at: u64,
}

/// Whether spares are on (`PYRO_SPARES=off|0|false|no` turns them off).
pub fn enabled_by_env() -> bool {
    !std::env::var("PYRO_SPARES").is_ok_and(|v| matches!(v.as_str(), "off" | "0" | "false" | "no"))
}

/// How long an unclaimed spare lives (`PYRO_SPARE_TTL_S`, 10 s..=1 day; default 10 min).
pub(crate) fn ttl_s() -> u64 {
    std::env::var("PYRO_SPARE_TTL_S").ok().and_then(|v| v.parse().ok()).unwrap_or(600).clamp(10, 86_400)
}

/// Whether a create of this shape can take a spare, and so whether it should leave one.
pub(crate) fn usable(rt: &Runtime, shape: Shape) -> bool {
    rt.templates && rt.spares && !shape.nic
}

pub(crate) fn root(paths: &Paths) -> PathBuf {
    paths.data.join("workspaces")
}

/// A spare's dir, which becomes its workspace's dir when a create takes it.
fn spare_dir(paths: &Paths, id: &str) -> PathBuf {
    root(paths).join(id)
}

/// A spare's VM runtime dir.
fn vm_dir(paths: &Paths, id: &str) -> PathBuf {
    paths.vms().join(id)
}

/// After a create wrote its row: if it took a spare, that is a workspace now and its claim
/// marker goes (otherwise there is none).
pub(crate) fn settled(dir: &Path) {
    let _ = std::fs::remove_file(dir.join(CLAIMED));
}

/// Whether the workspace dir `dir` is a waiting spare (not a workspace).
pub fn is_spare_dir(dir: &Path) -> bool {
    dir.join(SPARE).exists()
}

fn read_info(dir: &Path) -> Option<SpareInfo> {
    serde_json::from_slice(&std::fs::read(dir.join(SPARE)).ok()?).ok()
}

/// The spares there are (unclaimed, valid or not): id and description.
pub(crate) fn list(paths: &Paths) -> Vec<(String, SpareInfo)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(root(paths)).into_iter().flatten().flatten() {
        let id = e.file_name().to_string_lossy().to_string();
        if super::is_id(&id) {
            if let Some(info) = read_info(&e.path()) {
                out.push((id, info));
            }
        }
    }
    out
}

/// How many spares are waiting (valid or not).
pub fn count(paths: &Paths) -> usize {
    list(paths).len()
}

/// A spare in `dir` that may stay: described, unexpired, and its VM's supervisor alive. The
/// sweep removes one that is not (when nobody holds its lock).
pub(crate) fn is_live_spare(paths: &Paths, id: &str) -> bool {
    let Some(info) = read_info(&spare_dir(paths, id)) else { return false };
    info.expires_at > crate::clock::now_s() && !procs::supervisors_of(&vm_dir(paths, id)).is_empty()
}

/// The VM quota's check for a new VM of `mem_mib` that someone asked for: when it fails,
/// the spares give way (`evict_all`) and it is checked again. Create (when it took no spare),
/// fork, run and every launch use it.
pub fn room_for(paths: &Paths, mem_mib: u32) -> Result<()> {
    let check = || super::quota::check(&paths.vms(), mem_mib as u64, super::quota::Limits::from_env());
    if check().is_err() && evict_all(paths) > 0 {
        return check();
    }
    check()
}

/// Remove every spare nobody is using right now (a launch over the VM quota; `env prune`).
/// Returns how many went.
pub fn evict_all(paths: &Paths) -> usize {
    let mut n = 0;
    for (id, _) in list(paths) {
        let dir = spare_dir(paths, &id);
        let Ok(Some(_lock)) = crate::lockfile::try_lock(&dir.join("lock")) else { continue };
        if std::fs::rename(dir.join(SPARE), dir.join(CLAIMED)).is_ok() {
            discard(paths, &id);
            n += 1;
        }
    }
    n
}

/// Remove a spare's VM and files (the caller holds its lock and took `spare.json`).
pub(crate) fn discard(paths: &Paths, id: &str) {
    let vdir = vm_dir(paths, id);
    procs::kill_vm(&vdir);
    crate::paths::remove_tree(&vdir);
    crate::paths::remove_tree(&spare_dir(paths, id));
}

/// Start `pyro __spare` for this environment and shape, detached (it outlives a CLI call),
/// unless a spare for it is there already. Errors are ignored: a spare is an optimisation.
pub(crate) fn refill_in_background(rt: &Runtime, env: &BaseImage, shape: Shape) {
    let have = list(&rt.paths);
    if have.len() >= MAX_SPARES
        || have.iter().any(|(_, i)| {
            i.environment_dir == env.dir.display().to_string() && i.vcpus == shape.vcpus && i.mem_mib == shape.mem_mib
        })
    {
        return;
    }
    // Appended (one line per spare), started afresh past 1 MiB.
    let log_path = rt.paths.cache.join("spare.log");
    let fresh = std::fs::metadata(&log_path).is_ok_and(|m| m.len() > 1 << 20);
    let Ok(log) = std::fs::OpenOptions::new().create(true).append(!fresh).write(true).truncate(fresh).open(&log_path)
    else {
        return;
    };
    let mut cmd = std::process::Command::new(&rt.supervisor_bin);
    // Explicit, so an SDK caller's own paths hold (the child does not see them otherwise).
    cmd.env("PYRO_DATA_DIR", &rt.paths.data)
        .env("PYRO_CACHE_DIR", &rt.paths.cache)
        .env("PYRO_RUNTIME_DIR", &rt.paths.runtime)
        .arg("__spare")
        .arg(&env.name)
        .arg(shape.vcpus.to_string())
        .arg(shape.mem_mib.to_string());
    crate::proc::spawn_detached(cmd, log);
}

/// What a create and its first command run in the guest, once, in the spare's QEMU: the clock,
/// a command in /workspace, a freeze and a thaw (the create's baseline switch).
pub(crate) fn warm_up(client: &mut Client) -> Result<()> {
    let req = pyro_proto::ExecRequest {
        command: pyro_proto::Command::Argv(vec!["true".into()]),
        cwd: Some("/workspace".into()),
        env: vec![],
        timeout_ms: 30_000,
        max_output_bytes: 1024,
        progress_ms: 0,
    };
    // Twice: a process's first command takes paths (first faults, first allocations) that
    // later ones do not, and the workspace's first command is a later one.
    client.exec(req.clone())?;
    client.exec(req)?;
    client.call(&pyro_proto::Message::SetClock { unix_ns: unix_ns() })?;
    client.call(&pyro_proto::Message::Freeze)?;
    client.call(&pyro_proto::Message::Thaw)?;
    Ok(())
}

fn unix_ns() -> u64 {
    crate::clock::now_ns() as u64
}

/// Resume a paused spare's VM and set its clock (it stood still while paused).
fn wake(vdir: &Path) -> Result<super::Vm> {
    let st: super::spec::VmState =
        serde_json::from_slice(&std::fs::read(vdir.join("state.json")).ctx("reading the spare's state")?)
            .map_err(|_| Error::guest("the spare's state is unreadable"))?;
    let mut client = Client::connect(&vdir.join("supervisor.sock"))?;
    super::qmp::Qmp::connect(&vdir.join("qmp.sock"))
        .and_then(|mut q| q.execute("cont", serde_json::json!({})))
        .map_err(|e| Error::guest(format!("resuming the spare: {}", e.message)))?;
    client.call(&pyro_proto::Message::SetClock { unix_ns: unix_ns() })?;
    let boot = super::spec::BootReport {
        ok: true,
        error: None,
        serial_tail: None,
        boot_ms: st.boot_ms,
        guest_uptime_ms: 0,
        supervisor_pid: st.supervisor_pid,
        qemu_pid: st.qemu_pid,
        published: Vec::new(),
    };
    Ok(super::Vm { dir: vdir.to_path_buf(), client, boot })
}

/// Take a spare for a create of `env` in `shape`: its id, its lock (held until the row is
/// written) and a client of its running VM, or None. A spare that cannot be woken is
/// removed and the next one tried.
pub(crate) fn claim(rt: &Runtime, env: &BaseImage, shape: Shape) -> Option<(String, std::fs::File, super::Vm)> {
    let key = super::template::key(rt, env, shape).ok()?;
    let env_dir = env.dir.display().to_string();
    let now = crate::clock::now_s();
    for (id, info) in list(&rt.paths) {
        if info.environment_dir != env_dir
            || info.template_key != key
            || info.vcpus != shape.vcpus
            || info.mem_mib != shape.mem_mib
            || info.expires_at <= now + 5
        {
            continue;
        }
        let dir = spare_dir(&rt.paths, &id);
        let Ok(Some(lock)) = crate::lockfile::try_lock(&dir.join("lock")) else { continue };
        if std::fs::rename(dir.join(SPARE), dir.join(CLAIMED)).is_err() {
            continue; // taken meanwhile
        }
        crate::clock::trace("spare: claimed");
        match wake(&vm_dir(&rt.paths, &id)) {
            Ok(vm) => {
                let _ = std::fs::rename(dir.join("disk.qcow2.spare"), dir.join("disk.qcow2"));
                return Some((id, lock, vm));
            }
            Err(_) => discard(&rt.paths, &id),
        }
    }
    None
}

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

use super::lifecycle::{vm_dir, ws_dir, Workspaces};
use crate::env::Installed;
use crate::error::{Context, Error, Result};
use crate::runtime::Runtime;
use crate::template::{DiskUse, Found, Shape};
use crate::vm::{self, client::Client};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// In a spare's dir: it is a spare (see the module doc).
const SPARE: &str = "spare.json";
/// `spare.json` once a create took the spare.
const CLAIMED: &str = "spare.claimed";
/// The template's disk, linked, under a spare's `baseline.qcow2`.
pub(super) const TEMPLATE_DISK: &str = "template.qcow2";
/// Spares kept at most, all environments and shapes together.
const MAX_SPARES: usize = 2;

/// `spare.json`: what a spare is for.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SpareInfo {
    environment: String,
    /// The installed environment's dir (its digest): a re-pulled environment is another.
    environment_dir: String,
    /// The template it was restored from (`template::key`): a rebuilt template is another.
    template_key: String,
    vcpus: u32,
    mem_mib: u32,
    created_at: u64,
    expires_at: u64,
}

/// Whether spares are on (`PYRO_SPARES=off|0|false|no` turns them off).
pub fn enabled_by_env() -> bool {
    !std::env::var("PYRO_SPARES").is_ok_and(|v| matches!(v.as_str(), "off" | "0" | "false" | "no"))
}

/// How long an unclaimed spare lives (`PYRO_SPARE_TTL_S`, 10 s..=1 day; default 10 min).
fn ttl_s() -> u64 {
    std::env::var("PYRO_SPARE_TTL_S").ok().and_then(|v| v.parse().ok()).unwrap_or(600).clamp(10, 86_400)
}

/// Whether a create of this shape can take a spare, and so whether it should leave one.
pub(super) fn usable(rt: &Runtime, shape: Shape) -> bool {
    rt.templates && rt.spares && !shape.nic
}

fn root(paths: &crate::paths::Paths) -> PathBuf {
    paths.data.join("workspaces")
}

/// After a create wrote its row: if it took a spare, that is a workspace now and its claim
/// marker goes (otherwise there is none).
pub(super) fn settled(dir: &Path) {
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
fn list(paths: &crate::paths::Paths) -> Vec<(String, SpareInfo)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(root(paths)).into_iter().flatten().flatten() {
        let id = e.file_name().to_string_lossy().to_string();
        if super::is_workspace_id(&id) {
            if let Some(info) = read_info(&e.path()) {
                out.push((id, info));
            }
        }
    }
    out
}

/// How many spares are waiting (valid or not).
pub fn count(paths: &crate::paths::Paths) -> usize {
    list(paths).len()
}

/// A spare in `dir` that may stay: described, unexpired, and its VM's supervisor alive. The
/// sweep removes one that is not (when nobody holds its lock).
pub(super) fn is_live_spare(paths: &crate::paths::Paths, id: &str) -> bool {
    let Some(info) = read_info(&ws_dir(paths, id)) else { return false };
    info.expires_at > crate::clock::now_s() && !super::recover::supervisors_of(&vm_dir(paths, id)).is_empty()
}

/// The VM quota's check for a new VM of `mem_mib` that someone asked for: when it fails,
/// the spares give way (`evict_all`) and it is checked again. Create (when it took no spare),
/// fork, run and every launch use it.
pub fn room_for(paths: &crate::paths::Paths, mem_mib: u32) -> Result<()> {
    let check = || vm::quota::check(&paths.vms(), mem_mib as u64, vm::quota::Limits::from_env());
    if check().is_err() && evict_all(paths) > 0 {
        return check();
    }
    check()
}

/// Remove every spare nobody is using right now (a launch over the VM quota; `env prune`).
/// Returns how many went.
pub fn evict_all(paths: &crate::paths::Paths) -> usize {
    let mut n = 0;
    for (id, _) in list(paths) {
        let dir = ws_dir(paths, &id);
        let Ok(Some(_lock)) = crate::env::try_lock(&dir.join("lock")) else { continue };
        if std::fs::rename(dir.join(SPARE), dir.join(CLAIMED)).is_ok() {
            discard(paths, &id);
            n += 1;
        }
    }
    n
}

/// Remove a spare's VM and files (the caller holds its lock and took `spare.json`).
fn discard(paths: &crate::paths::Paths, id: &str) {
    let vdir = vm_dir(paths, id);
    super::recover::kill_vm(&vdir);
    super::recover::remove_tree(&vdir);
    super::recover::remove_tree(&ws_dir(paths, id));
}

/// Start `pyro __spare` for this environment and shape, detached (it outlives a CLI call),
/// unless a spare for it is there already. Errors are ignored: a spare is an optimisation.
pub(super) fn refill_in_background(rt: &Runtime, env: &Installed, shape: Shape) {
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

/// The detached preparer (`pyro __spare ENV VCPUS MEM`): prepares a spare, then waits out its
/// life and removes it if nobody took it. Exit status 0 unless preparing failed.
pub fn preparer_main(args: &[String]) -> i32 {
    let run = || -> Result<()> {
        let [env, vcpus, mem] = args else { return Err(Error::invalid("usage: ENV VCPUS MEM")) };
        let parse = |s: &str| s.parse::<u32>().map_err(|_| Error::invalid(format!("not a number: {s}")));
        let shape = Shape { vcpus: parse(vcpus)?, mem_mib: parse(mem)?, nic: false };
        let pyro = crate::Pyro::new()?;
        let rt = pyro.runtime()?;
        let installed =
            crate::env::installed(&rt.paths, env).ok_or_else(|| Error::not_found(format!("{env} is not installed")))?;
        let ws = pyro.workspaces()?;
        // The create that started us is running its first command now: on a small host the
        // restore below would take the CPU from it.
        std::thread::sleep(std::time::Duration::from_secs(1));
        if let Some((id, expires_at)) = ws.prepare_spare(&installed, shape)? {
            eprintln!("spare: {id} ready for {env} ({} vCPU, {} MiB)", shape.vcpus, shape.mem_mib);
            let wait = expires_at.saturating_sub(crate::clock::now_s());
            std::thread::sleep(std::time::Duration::from_secs(wait));
            let dir = ws_dir(&rt.paths, &id);
            if !dir.exists() {
                // Its data dir was removed under it (a test's temp dir): its supervisor is
                // still found by its command line.
                super::recover::kill_vm(&vm_dir(&rt.paths, &id));
            } else if let Ok(Some(_lock)) = crate::env::try_lock(&dir.join("lock")) {
                if std::fs::rename(dir.join(SPARE), dir.join(CLAIMED)).is_ok() {
                    discard(&rt.paths, &id);
                    eprintln!("spare: {id} expired unclaimed; removed");
                }
            }
        }
        Ok(())
    };
    match run() {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("spare: {}", e.message);
            1
        }
    }
}

impl Workspaces<'_> {
    /// Prepare a spare for `env` in `shape` (see the module doc): its id and expiry, or None
    /// when none is needed or possible now (one exists or is being made, no template, no room).
    fn prepare_spare(&self, env: &Installed, shape: Shape) -> Result<Option<(String, u64)>> {
        let rt = self.rt()?;
        if !usable(rt, shape) {
            return Ok(None);
        }
        crate::paths::private_dir(&root(self.paths()))?;
        // One preparer at a time (so `MAX_SPARES` holds); others just leave.
        let Ok(Some(_plock)) = crate::env::try_lock(&root(self.paths()).join(".spare-prepare.lock")) else {
            return Ok(None);
        };
        let have = list(self.paths());
        let env_dir = env.dir.display().to_string();
        if have.len() >= MAX_SPARES
            || have
                .iter()
                .any(|(_, i)| i.environment_dir == env_dir && i.vcpus == shape.vcpus && i.mem_mib == shape.mem_mib)
        {
            return Ok(None);
        }
        let Found::Usable(template) = crate::template::lookup(rt, env, shape)? else { return Ok(None) };
        // Room for the spare and one more VM of its size: a spare never takes the last slot.
        let mut limits = vm::quota::Limits::from_env();
        limits.max_vms = limits.max_vms.map(|m| m.saturating_sub(1));
        if vm::quota::check(&self.paths().vms(), 2 * shape.mem_mib as u64, limits).is_err() {
            return Ok(None);
        }
        let id = vm::new_id();
        let dir = ws_dir(self.paths(), &id);
        crate::paths::private_dir(&dir)?;
        let _lock = crate::env::lock(&dir.join("lock"))?;
        let now = crate::clock::now_s();
        let info = SpareInfo {
            environment: env.name.clone(),
            environment_dir: env_dir,
            template_key: template.info.key.clone(),
            vcpus: shape.vcpus,
            mem_mib: shape.mem_mib,
            created_at: now,
            expires_at: now + ttl_s(),
        };
        let made = (|| -> Result<()> {
            template.place_disk(&dir.join(TEMPLATE_DISK), DiskUse::Link)?;
            let size = vm::qcow2_size(&dir.join(TEMPLATE_DISK))?;
            vm::create_overlay_on(&rt.qemu_img, TEMPLATE_DISK, &dir.join("baseline.qcow2"), size)?;
            // The live layer the create switches to, made now: one qemu-img less per create.
            vm::create_overlay_on(&rt.qemu_img, "baseline.qcow2", &dir.join("disk.qcow2.spare"), size)?;
            let identity = self.identity(&id)?;
            let network = super::store::WorkspaceNetwork { options: Default::default(), published: Vec::new() };
            let mut vm = self.boot(
                &id,
                &dir.join("baseline.qcow2"),
                (shape.vcpus, shape.mem_mib),
                &network,
                Some(template.restore()),
                Some(identity),
            )?;
            // Run what a create and its first command run, so their code is translated.
            warm_up(&mut vm.client)?;
            vm::qmp::Qmp::connect(&vm.dir.join("qmp.sock"))
                .and_then(|mut q| q.execute("stop", serde_json::json!({})))
                .map_err(|e| Error::guest(format!("pausing the spare: {}", e.message)))?;
            crate::paths::write_atomic(&dir.join(SPARE), &serde_json::to_vec(&info).unwrap())?;
            Ok(())
        })();
        match made {
            Ok(()) => Ok(Some((id, info.expires_at))),
            Err(e) => {
                self.stop_vm(&id);
                discard(self.paths(), &id);
                Err(e)
            }
        }
    }

    /// Take a spare for a create of `env` in `shape`: its id, its lock (held until the row is
    /// written) and a client of its running VM, or None. A spare that cannot be woken is
    /// removed and the next one tried.
    pub(super) fn claim_spare(&self, env: &Installed, shape: Shape) -> Option<(String, std::fs::File, vm::Vm)> {
        let rt = self.rt().ok()?;
        let key = crate::template::key(rt, env, shape).ok()?;
        let env_dir = env.dir.display().to_string();
        let now = crate::clock::now_s();
        for (id, info) in list(self.paths()) {
            if info.environment_dir != env_dir
                || info.template_key != key
                || info.vcpus != shape.vcpus
                || info.mem_mib != shape.mem_mib
                || info.expires_at <= now + 5
            {
                continue;
            }
            let dir = ws_dir(self.paths(), &id);
            let Ok(Some(lock)) = crate::env::try_lock(&dir.join("lock")) else { continue };
            if std::fs::rename(dir.join(SPARE), dir.join(CLAIMED)).is_err() {
                continue; // taken meanwhile
            }
            crate::clock::trace("spare: claimed");
            match wake(&vm_dir(self.paths(), &id)) {
                Ok(vm) => {
                    let _ = std::fs::rename(dir.join("disk.qcow2.spare"), dir.join("disk.qcow2"));
                    return Some((id, lock, vm));
                }
                Err(_) => discard(self.paths(), &id),
            }
        }
        None
    }
}

/// What a create and its first command run in the guest, once, in the spare's QEMU: the clock,
/// a command in /workspace, a freeze and a thaw (the create's baseline switch).
fn warm_up(client: &mut Client) -> Result<()> {
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
    client.call(&pyro_proto::Request::SetClock { unix_ns: unix_ns() })?;
    client.call(&pyro_proto::Request::Freeze)?;
    client.call(&pyro_proto::Request::Thaw)?;
    Ok(())
}

fn unix_ns() -> u64 {
    crate::clock::now_ns() as u64
}

/// Resume a paused spare's VM and set its clock (it stood still while paused).
fn wake(vdir: &Path) -> Result<vm::Vm> {
    let st: vm::spec::VmState =
        serde_json::from_slice(&std::fs::read(vdir.join("state.json")).ctx("reading the spare's state")?)
            .map_err(|_| Error::guest("the spare's state is unreadable"))?;
    let mut client = Client::connect(&vdir.join("supervisor.sock"))?;
    vm::qmp::Qmp::connect(&vdir.join("qmp.sock"))
        .and_then(|mut q| q.execute("cont", serde_json::json!({})))
        .map_err(|e| Error::guest(format!("resuming the spare: {}", e.message)))?;
    client.call(&pyro_proto::Request::SetClock { unix_ns: unix_ns() })?;
    let boot = vm::spec::BootReport {
        ok: true,
        error: None,
        serial_tail: None,
        boot_ms: st.boot_ms,
        guest_uptime_ms: 0,
        supervisor_pid: st.supervisor_pid,
        qemu_pid: st.qemu_pid,
        published: Vec::new(),
    };
    Ok(vm::Vm { dir: vdir.to_path_buf(), client, boot })
}

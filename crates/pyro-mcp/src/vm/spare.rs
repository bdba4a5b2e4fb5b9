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

use super::procs;
use crate::error::Result;
use crate::paths::Paths;
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

/// How long an unclaimed spare lives (`PYRO_SPARE_TTL_S`, 10 s..=1 day; default 10 min).
pub(crate) fn ttl_s() -> u64 {
    std::env::var("PYRO_SPARE_TTL_S").ok().and_then(|v| v.parse().ok()).unwrap_or(600).clamp(10, 86_400)
}

pub(crate) fn root(paths: &Paths) -> PathBuf {
    paths.data.join("workspaces")
}

/// A spare's dir, which becomes its workspace's dir when a create takes it.
pub(crate) fn spare_dir(paths: &Paths, id: &str) -> PathBuf {
    root(paths).join(id)
}

/// A spare's VM runtime dir.
pub(crate) fn vm_dir(paths: &Paths, id: &str) -> PathBuf {
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

//! Stopping and starting workspaces.
//!
//! `stop` saves the running guest's memory and devices to the workspace directory (QEMU's
//! migration into a file, with the guest's file system frozen so the disk is consistent on
//! its own) and ends QEMU and the supervisor: a stopped workspace uses no CPU and no RAM.
//! `start` restores it, so processes, shells and services go on; the guest's clock is set
//! and its file system thawed. `stop --discard-memory` shuts the guest down cleanly instead,
//! and `start` then boots from the disk. A restore that fails, or saved memory from another
//! QEMU, kernel or machine shape, falls back to a boot from the disk, and the result says so.
//!
//! Files in the workspace directory, and what each state of them means:
//! - `stopped.json`: the workspace was stopped on request. With the VM not running, nothing
//!   boots it but `start` (or `reset`); operations that need the guest say to start it.
//! - `memory.vmstate` (+ `memory.json`, what it needs to be restored): saved memory, complete
//!   (the supervisor writes `.part` and renames it once QEMU is done and the data is synced).
//!   It exists only while the disk is exactly as the saved guest left it.
//! - `memory.vmstate.restoring`: a start took the saved memory. Once a restored guest runs,
//!   the disk moves on, so this file is never restored again: a start interrupted by a kill
//!   leaves it, and the next start removes it and boots from the disk (and says so).
//!
//! The supervisor saves the memory by itself, so a `pyro` killed during `stop` still leaves a
//! complete stop (or a running VM, if the save had not started); `stopped.json` is written
//! before asking, so the next call sees a stop either way.

use super::base::{vm_dir, ws_dir, Workspaces};
use super::event::WorkspaceEvent;
use super::WorkspaceInfo;
use crate::clock::now_s;
use crate::error::{Context, Error, Result};
use crate::vm::Client;
use pyro_proto::{Reply, Request};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::path::Path;

pub const MEMORY: &str = "memory.vmstate";
const MEMORY_META: &str = "memory.json";
const RESTORING: &str = "memory.vmstate.restoring";
const STOPPED: &str = "stopped.json";
/// A fork that has not run yet: its saved memory is a copy of another workspace's guest, so
/// whichever start comes first (the fork's own, or a later one if that was cut short) gives
/// it its own identity and host ports.
pub(super) const FORK_FRESH: &str = "fork.fresh";

/// `stopped.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StopMarker {
    at: u64,
    /// Memory was asked to be kept (whether the save completed is `memory.vmstate`'s to say).
    memory: bool,
}

/// `memory.json`: when the memory was saved and what a restore needs to match.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct MemoryMeta {
    saved_at: u64,
    /// QEMU version, accelerator, CPU model, vCPUs, memory, devices and kernel release.
    machine: String,
}

/// `stop`: what happened.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct StopReport {
    /// The workspace after the stop, its fields at the top level of the result.
    #[serde(flatten)]
    pub workspace: WorkspaceInfo,
    /// The guest's memory was saved: `start` resumes its processes.
    pub memory_saved: bool,
    /// Bytes of saved memory and device state; absent when nothing was saved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
    /// How long the stop took, in milliseconds.
    pub duration_ms: u64,
    /// Set when the VM was not running (nothing to save).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// `start`: whether the saved guest was resumed, or why it booted from its disk.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct StartReport {
    /// The workspace after the start, its fields at the top level of the result.
    #[serde(flatten)]
    pub workspace: WorkspaceInfo,
    /// Processes, shells and services went on where they were.
    pub resumed: bool,
    /// How long the start took, in milliseconds.
    pub duration_ms: u64,
    /// Why saved memory was not used, when there was some.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Why a workspace whose VM is not running counts as stopped on request (None: it does not).
pub fn stopped_reason(ws: &Path) -> Option<String> {
    if ws.join(MEMORY).exists() {
        let mib = std::fs::metadata(ws.join(MEMORY)).map(|m| m.len() >> 20).unwrap_or(0);
        return Some(format!("stopped on request; memory saved ({mib} MiB): `start` resumes its processes"));
    }
    ws.join(STOPPED).exists().then(|| "stopped on request; `start` boots it from its disk".to_string())
}

/// Saved memory, if the workspace was stopped with it.
pub fn memory_saved(ws: &Path) -> bool {
    ws.join(MEMORY).exists()
}

/// Forget a stop: the saved memory first (it must never outlive a disk change), then the
/// marker. Used by `start` once the VM runs and by `reset` before it replaces the disk.
pub(super) fn clear(ws: &Path) -> Result<()> {
    for f in [MEMORY, RESTORING, MEMORY_META, STOPPED, FORK_FRESH] {
        match std::fs::remove_file(ws.join(f)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(format!("removing {f}"), e)),
        }
    }
    crate::paths::sync_dir(ws)
}

/// Give a fork's dir the saved memory `path` holds now (a running source's, just saved into
/// the fork's dir, or a stopped source's, linked): `memory.json` for this host and shape, and
/// the file under its name. `start` then resumes it like any stopped workspace.
/// A stopped source's memory keeps the description it was saved with (it may predate this
/// host's QEMU, which `start` then notices).
pub(super) fn adopt_memory(w: &Workspaces<'_>, r: &super::store::Row, fork_dir: &Path, path: &Path) -> Result<()> {
    let source_meta = path.parent().filter(|d| *d != fork_dir).map(|d| d.join(MEMORY_META));
    match source_meta {
        Some(m) => {
            let bytes = std::fs::read(&m).ctx("reading the saved memory's description")?;
            crate::paths::write_atomic(&fork_dir.join(MEMORY_META), &bytes)?;
            std::fs::hard_link(path, fork_dir.join(MEMORY)).ctx("linking the saved memory")?;
        }
        None => {
            let meta = MemoryMeta {
                saved_at: now_s(),
                machine: machine_key(w, r.vcpu_count, r.mem_mib, r.network.options.policy.has_nic())?,
            };
            crate::paths::write_atomic(&fork_dir.join(MEMORY_META), &serde_json::to_vec(&meta).unwrap())?;
        }
    }
    crate::paths::sync_dir(fork_dir)
}

/// The saved memory file of a stopped workspace, if it has one.
pub(super) fn memory_file(ws: &Path) -> Option<std::path::PathBuf> {
    Some(ws.join(MEMORY)).filter(|p| p.exists())
}

/// What saved memory must match to be restored (the same key warm templates use).
fn machine_key(w: &Workspaces<'_>, vcpus: u32, mem_mib: u32, nic: bool) -> Result<String> {
    crate::vm::template::machine_key(w.rt()?, vcpus, mem_mib, nic)
}

impl Workspaces<'_> {
    /// Stop a running workspace: save its memory (default) or shut the guest down
    /// (`discard_memory`). A workspace stopped already is an error; one whose VM died is
    /// marked stopped (there is nothing to save).
    pub fn stop(&mut self, key: &str, discard_memory: bool) -> Result<StopReport> {
        let started = std::time::Instant::now();
        let r = self.resolve(key)?;
        let dir = ws_dir(self.paths(), &r.id);
        let _lock = self.lock_ws(&r.id)?;
        let sock = vm_dir(self.paths(), &r.id).join("supervisor.sock");
        let client = self.wait_booting(&r.id);
        if client.is_none() && stopped_reason(&dir).is_some() {
            return Err(Error::state(format!("workspace {} is stopped already", r.id))
                .hint(format!("start it with `pyro workspace start {}`", r.id)));
        }
        self.host.cancel_token().check("workspace stop")?;
        // Marked first: whatever happens next (a kill included), the next call sees a stop
        // asked for, and the VM either still runs (the stop did not happen) or is stopped.
        let marker = StopMarker { at: now_s(), memory: !discard_memory };
        crate::paths::write_atomic(&dir.join(STOPPED), &serde_json::to_vec(&marker).unwrap())?;
        let Some(mut client) = client else {
            let (state, reason) = super::base::vm_state(self.paths(), &r.id);
            let note = format!(
                "the VM was not running ({state}{}); marked stopped",
                reason.map(|r| format!(": {r}")).unwrap_or_default()
            );
            self.store.event(
                &r.id,
                &WorkspaceEvent::WorkspaceStop {
                    memory_saved: false,
                    memory_bytes: None,
                    ms: None,
                    note: Some(note.clone()),
                },
            )?;
            return Ok(StopReport {
                workspace: self.info(&r),
                memory_saved: false,
                memory_bytes: None,
                duration_ms: started.elapsed().as_millis() as u64,
                note: Some(note),
            });
        };
        // Stale memory (from a start cut short) is never a candidate for the next start.
        for f in [MEMORY, RESTORING] {
            let _ = std::fs::remove_file(dir.join(f));
        }
        let saved = if discard_memory {
            client.shutdown().map(|_| None)
        } else {
            self.save_memory(&r, &dir, &mut client).map(Some)
        };
        let memory_bytes = match saved {
            Ok(b) => b,
            Err(e) => {
                let _ = std::fs::remove_file(dir.join(STOPPED));
                return Err(e);
            }
        };
        wait_gone(&sock);
        let duration_ms = started.elapsed().as_millis() as u64;
        self.store.event(
            &r.id,
            &WorkspaceEvent::WorkspaceStop {
                memory_saved: memory_bytes.is_some(),
                memory_bytes,
                ms: Some(duration_ms),
                note: None,
            },
        )?;
        Ok(StopReport {
            workspace: self.info(&self.resolve(&r.id)?),
            memory_saved: memory_bytes.is_some(),
            memory_bytes,
            duration_ms,
            note: None,
        })
    }

    /// Start a stopped workspace: resume its saved memory when there is some that fits this
    /// host's QEMU and kernel, else boot from its disk. Starting a running one is an error; a
    /// workspace whose VM died is booted from its disk.
    pub fn start(&mut self, key: &str) -> Result<StartReport> {
        self.start_as(key, false)
    }

    /// `start`; `fork` for a fork's first start: its saved memory is a copy of another
    /// workspace's guest, so it gets its own identity and free host ports.
    pub(super) fn start_as(&mut self, key: &str, fork: bool) -> Result<StartReport> {
        let started = std::time::Instant::now();
        let r = self.resolve(key)?;
        let dir = ws_dir(self.paths(), &r.id);
        let _lock = self.lock_ws(&r.id)?;
        if self.wait_booting(&r.id).is_some() {
            return Err(Error::state(format!("workspace {} is running already", r.id)));
        }
        self.host.cancel_token().check("workspace start")?;
        self.recover_reset(&r.id)?;
        self.recover_pending(&r.id)?;
        let fork = fork || dir.join(FORK_FRESH).exists();
        let disk = dir.join("disk.qcow2");
        let mut note = None;
        if dir.join(RESTORING).exists() {
            std::fs::remove_file(dir.join(RESTORING)).ctx("removing the memory of an interrupted start")?;
            note = Some("a start was interrupted after it took the saved memory; booted from the disk".to_string());
        }
        let mut resumed = None;
        if dir.join(MEMORY).exists() {
            match self.restorable(&r, &dir) {
                Err(why) => {
                    std::fs::remove_file(dir.join(MEMORY)).ctx("removing saved memory")?;
                    note = Some(format!("saved memory not used ({why}); booted from the disk"));
                }
                Ok(()) => {
                    // From here the saved memory is used at most once (see the module docs).
                    std::fs::rename(dir.join(MEMORY), dir.join(RESTORING)).ctx("taking the saved memory")?;
                    crate::paths::sync_dir(&dir)?;
                    match self.resume(&r, &disk, &dir.join(RESTORING), fork) {
                        Ok(vm) => resumed = Some(vm),
                        Err(e) => {
                            note =
                                Some(format!("restoring the saved memory failed ({}); booted from the disk", e.message))
                        }
                    }
                }
            }
        }
        let was_resumed = resumed.is_some();
        if !was_resumed {
            self.reboot(&r, &disk)?;
        }
        clear(&dir)?;
        let duration_ms = started.elapsed().as_millis() as u64;
        self.store.event(
            &r.id,
            &WorkspaceEvent::WorkspaceStart { resumed: was_resumed, note: note.clone(), ms: duration_ms },
        )?;
        Ok(StartReport { workspace: self.info(&self.resolve(&r.id)?), resumed: was_resumed, duration_ms, note })
    }

    /// Freeze the guest's file system and have the supervisor save the VM: the frozen file
    /// system is consistent on the disk by itself, so the disk tools read it as is and a
    /// failed restore boots from a clean file system. `start` thaws the restored guest (its
    /// agent also thaws itself after 20 s). A failed save thaws it at once.
    fn save_memory(&self, r: &super::store::Row, dir: &Path, client: &mut Client) -> Result<u64> {
        let meta = MemoryMeta {
            saved_at: now_s(),
            machine: machine_key(self, r.vcpu_count, r.mem_mib, r.network.options.policy.has_nic())?,
        };
        crate::paths::write_atomic(&dir.join(MEMORY_META), &serde_json::to_vec(&meta).unwrap())?;
        client.call(&Request::Freeze)?;
        match client.call(&Request::Suspend { path: dir.join(MEMORY).display().to_string() }) {
            Ok(Reply::Suspended { bytes, .. }) => Ok(bytes),
            other => {
                let _ = client.call(&Request::Thaw);
                Err(match other {
                    Err(e) => e,
                    Ok(_) => Error::guest("the supervisor sent a malformed reply to a stop"),
                })
            }
        }
    }

    /// Saved memory fits this host when its QEMU, kernel and the machine's shape are those
    /// it was saved from (else QEMU would refuse it, or worse).
    fn restorable(&self, r: &super::store::Row, dir: &Path) -> std::result::Result<(), String> {
        let meta: MemoryMeta = std::fs::read(dir.join(MEMORY_META))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or("its description is missing")?;
        let now =
            machine_key(self, r.vcpu_count, r.mem_mib, r.network.options.policy.has_nic()).map_err(|e| e.message)?;
        if meta.machine != now {
            return Err(format!("saved by another QEMU, kernel or machine shape: {} now, {} then", now, meta.machine));
        }
        Ok(())
    }

    /// Restore the saved guest, set its clock, thaw its file system, and publish again the
    /// ports its services had.
    fn resume(&mut self, r: &super::store::Row, disk: &Path, memory: &Path, fork: bool) -> Result<()> {
        let mut vm = self.reboot_with(r, disk, Some(memory), fork)?;
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        vm.client.call(&Request::SetClock { unix_ns: now.as_nanos() as u64 })?;
        // A guest the agent thawed itself already answers with an error: nothing to do.
        let _ = vm.client.call(&Request::Thaw);
        self.republish_services(&r.id, &mut vm.client, fork);
        Ok(())
    }
}

/// Wait (briefly) until a stopped VM's supervisor has removed its socket.
fn wait_gone(sock: &Path) {
    let start = std::time::Instant::now();
    while sock.exists() && start.elapsed() < std::time::Duration::from_secs(10) {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

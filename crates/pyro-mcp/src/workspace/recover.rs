//! Crash consistency: what a call killed with `kill -9` leaves behind, found and settled by
//! the next call (every `Workspaces::open`) or by `pyro doctor --fix`.
//!
//! The rule every multi-step operation follows: the database row is the truth of whether a
//! workspace exists. Create writes its row last, delete removes it first, and both hold the
//! workspace lock (`<data>/workspaces/<id>/lock`) throughout. So whatever a killed call left
//! is one of:
//!
//! - a workspace dir with no row whose lock nobody holds: a create or delete that died (or a
//!   warm spare that expired or whose VM died; a live one stays, see `spare`). Its VM
//!   (a detached supervisor and QEMU, perhaps still booting), runtime dir, secrets and files
//!   are removed: the create is rolled back, the delete completed.
//! - a runtime dir `<runtime>/vms/<id>` of a persistent VM with no row and no workspace dir:
//!   the same, after the files went.
//! - a runtime dir of a throwaway VM (`pyro run`, builders) whose supervisor is dead: removed
//!   (its overlay lives there) once it is a minute old, so a launch in progress is never taken.
//! - sockets of a workspace VM whose supervisor is dead: removed (the state says `dead`).
//!
//! Within a live workspace, a reset and a snapshot create leave a journal file that the next
//! call under the lock completes (`recover_reset`, `recover_pending`).

use super::base::{vm_dir, ws_dir, Workspaces};
use crate::error::Result;
use crate::paths::{empty_trash, remove_tree};
use crate::vm::procs::{kill_vm, older_than, remove_stale_sockets, supervisors_of};
use schemars::JsonSchema;
use serde::Serialize;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A workspace dir younger than this with no row may be a create that has not taken its lock
/// yet; a throwaway VM dir younger than this may be a launch whose supervisor is starting.
const GRACE: Duration = Duration::from_secs(60);

/// What a sweep removed (the `doctor --fix` report).
#[derive(Debug, Clone, Default, Serialize, JsonSchema)]
pub struct SweepReport {
    /// Workspaces whose create or delete was cut short: VM stopped, files removed.
    pub workspaces: Vec<String>,
    /// VM runtime dirs removed (with their sockets and overlays).
    pub vm_dirs: Vec<String>,
    /// Supervisors of those VMs stopped.
    pub supervisors_stopped: u32,
    /// Dead VMs' socket files removed.
    pub stale_sockets: u32,
    /// Temporary files of killed calls removed (sync archives).
    pub stale_files: u32,
}

impl SweepReport {
    /// Nothing was found to settle.
    pub fn is_empty(&self) -> bool {
        self.workspaces.is_empty()
            && self.vm_dirs.is_empty()
            && self.supervisors_stopped == 0
            && self.stale_sockets == 0
    }
}

fn names(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| d.flatten().filter_map(|e| e.file_name().to_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

impl Workspaces<'_> {
    /// Settle what killed calls left (see the module doc). Cheap when there is nothing: one
    /// query and two directory listings.
    pub fn sweep(&mut self) -> Result<SweepReport> {
        let mut report = SweepReport::default();
        let rows: BTreeSet<String> = self.store.list()?.into_iter().map(|r| r.id).collect();
        let paths = self.paths().clone();
        let wroot = paths.data.join("workspaces");
        empty_trash(&wroot);
        empty_trash(&paths.vms());
        for id in names(&wroot) {
            if rows.contains(&id) || !super::is_workspace_id(&id) {
                continue;
            }
            let dir = wroot.join(&id);
            if !older_than(&dir, GRACE) && !dir.join("lock").exists() {
                continue; // a create that has not taken its lock yet
            }
            // Held: a create or delete in progress. Free: whoever held it is gone.
            let Ok(Some(_lock)) = crate::lockfile::try_lock(&dir.join("lock")) else { continue };
            if self.store.get(&id)?.is_some() {
                continue; // a create finished meanwhile
            }
            if crate::vm::spare::is_live_spare(&paths, &id) {
                continue; // a warm spare waiting for a create (an expired or dead one goes)
            }
            report.supervisors_stopped += self.discard(&id);
            report.workspaces.push(id);
        }
        // Secrets of a workspace that has neither a row nor a dir (its discard was cut short
        // between the two) are removed: nothing can use them again.
        for id in names(&super::secrets::secrets_dir(&paths, "")) {
            if super::is_workspace_id(&id) && !rows.contains(&id) && !wroot.join(&id).exists() {
                super::secrets::remove(&paths, &id);
            }
        }
        let vroot = paths.vms();
        for id in names(&vroot) {
            let vdir = vroot.join(&id);
            if id.starts_with('.') || !vdir.is_dir() {
                continue;
            }
            // A warm template's builder: swept like a throwaway VM (it has no workspace).
            let persistent = spec_persistent(&vdir).filter(|_| !id.starts_with("tpl-"));
            if rows.contains(&id) {
                // Sync archives of killed calls (a live call holds its archive's lock).
                let wdir = wroot.join(&id);
                for n in names(&wdir) {
                    if n.starts_with("sync-") && n.ends_with(".tar") {
                        if let Ok(Some(_held)) = crate::lockfile::try_lock(&wdir.join(&n)) {
                            let _ = std::fs::remove_file(wdir.join(&n));
                            report.stale_files += 1;
                        }
                    }
                }
                report.stale_sockets += remove_stale_sockets(&vdir);
                continue;
            }
            if persistent == Some(true) {
                if wroot.join(&id).exists() {
                    continue; // its workspace dir is a create in progress (handled above)
                }
                report.supervisors_stopped += kill_vm(&vdir);
                remove_tree(&vdir);
                report.vm_dirs.push(id);
            } else if supervisors_of(&vdir).is_empty() && older_than(&vdir, GRACE) {
                // A throwaway VM whose supervisor is gone: its overlay and sockets stay behind.
                remove_tree(&vdir);
                report.vm_dirs.push(id);
            }
        }
        Ok(report)
    }

    /// Remove everything of a workspace that has no row (the caller holds its lock): the VM
    /// first, then its runtime dir, secrets and files. Returns supervisors stopped.
    pub(super) fn discard(&self, id: &str) -> u32 {
        let vdir = vm_dir(self.paths(), id);
        let n = kill_vm(&vdir);
        remove_tree(&vdir);
        super::secrets::remove(self.paths(), id);
        remove_tree(&ws_dir(self.paths(), id));
        n
    }
}

/// Whether a VM dir's spec says persistent (a workspace VM); None if unreadable.
fn spec_persistent(vdir: &Path) -> Option<bool> {
    let spec: crate::vm::spec::VmSpec = serde_json::from_slice(&std::fs::read(vdir.join("spec.json")).ok()?).ok()?;
    Some(!spec.ephemeral)
}

/// The files a reset journals its progress in (`reset.json`): written before the live layer
/// is replaced, removed once the database says reset.
pub(super) const RESET_JOURNAL: &str = "reset.json";

#[derive(Debug, Serialize, serde::Deserialize)]
pub(super) struct ResetJournal {
    /// The snapshot to go back to (None: the baseline).
    pub snapshot: Option<String>,
    /// The workspace's reset count before this reset: the database step is done when it moved.
    pub from_generation: u32,
}

/// The path of a workspace's reset journal.
pub(super) fn reset_journal(dir: &Path) -> PathBuf {
    dir.join(RESET_JOURNAL)
}

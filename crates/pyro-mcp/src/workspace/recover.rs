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

use super::lifecycle::{vm_dir, ws_dir, Workspaces};
use crate::error::Result;
use crate::vm::quota;
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
    /// VM runtime dirs removed (with their sockets and overlays), and supervisors stopped.
    pub vm_dirs: Vec<String>,
    pub supervisors_stopped: u32,
    /// Dead VMs' socket files removed.
    pub stale_sockets: u32,
    /// Temporary files of killed calls removed (sync archives).
    pub stale_files: u32,
}

impl SweepReport {
    pub fn is_empty(&self) -> bool {
        self.workspaces.is_empty()
            && self.vm_dirs.is_empty()
            && self.supervisors_stopped == 0
            && self.stale_sockets == 0
    }
}

fn older_than(p: &Path, age: Duration) -> bool {
    std::fs::metadata(p).and_then(|m| m.modified()).ok().and_then(|t| t.elapsed().ok()).is_some_and(|e| e >= age)
}

fn names(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| d.flatten().filter_map(|e| e.file_name().to_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

/// Every live process running `pyro __supervise DIR` (its recorded pid first; a scan of /proc
/// finds one whose launcher died before recording it).
pub fn supervisors_of(dir: &Path) -> Vec<i32> {
    let mut pids: Vec<i32> = quota::supervisor_of(dir).into_iter().collect();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        if let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) {
            if !pids.contains(&pid) && quota::is_supervisor_of(pid, dir) {
                pids.push(pid);
            }
        }
    }
    pids
}

/// Stop a VM for good without asking it: SIGKILL its supervisor(s) (QEMU follows through
/// `PR_SET_PDEATHSIG`) and wait until no process uses the dir. Returns how many were stopped.
pub fn kill_vm(dir: &Path) -> u32 {
    let pids = supervisors_of(dir);
    for pid in &pids {
        // SAFETY: kill takes no pointers; the pid was just checked to be our supervisor of DIR.
        unsafe { libc::kill(*pid, libc::SIGKILL) };
    }
    let needle = dir.to_string_lossy().to_string();
    let start = std::time::Instant::now();
    while start.elapsed() < Duration::from_secs(5) && uses(&needle) {
        std::thread::sleep(Duration::from_millis(20));
    }
    pids.len() as u32
}

/// True while a live process of ours has `needle` in its command line (a supervisor or QEMU).
fn uses(needle: &str) -> bool {
    std::fs::read_dir("/proc").into_iter().flatten().flatten().any(|e| {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else { return false };
        let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        // A zombie has an empty command line and holds nothing.
        crate::proc::alive_and_ours(pid) && String::from_utf8_lossy(&cmd).replace('\0', " ").contains(needle)
    })
}

const SOCKETS: [&str; 5] = ["supervisor.sock", "ctl.sock", "qmp.sock", "serial.sock", "net.sock"];

/// Remove the sockets a workspace VM's supervisor left when it was killed (it had no chance
/// to). Only when no process is its supervisor: the recorded pid is not enough, since a
/// supervisor whose launcher was killed before recording it boots and serves all the same
/// (it records itself as it starts, but one started by an older pyro does not), and taking
/// a live VM's sockets would cut it off. Returns how many were removed.
pub(super) fn remove_stale_sockets(vdir: &Path) -> u32 {
    // The usual cases, cheap: a recorded supervisor is alive, or no socket is there.
    if quota::supervisor_of(vdir).is_some() || !SOCKETS.iter().any(|s| vdir.join(s).exists()) {
        return 0;
    }
    // A dir changed within the last second may be a launch whose supervisor is not yet exec'd;
    // then one not on record is looked for in /proc.
    if !older_than(vdir, Duration::from_secs(1)) || !supervisors_of(vdir).is_empty() {
        return 0;
    }
    SOCKETS.iter().filter(|s| std::fs::remove_file(vdir.join(s)).is_ok()).count() as u32
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
            let Ok(Some(_lock)) = crate::env::try_lock(&dir.join("lock")) else { continue };
            if self.store.get(&id)?.is_some() {
                continue; // a create finished meanwhile
            }
            if super::spare::is_live_spare(&paths, &id) {
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
                        if let Ok(Some(_held)) = crate::env::try_lock(&wdir.join(&n)) {
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

/// Names of directories being removed: a sweep finishes any it finds.
const TRASH: &str = ".trash-";

/// Remove a directory tree so that a kill at any instant leaves either the whole tree or a
/// `.trash-*` name the next sweep removes: never a half-removed tree under its real name (which
/// could look like a create that has not taken its lock yet).
pub(crate) fn remove_tree(dir: &Path) {
    let Some(name) = dir.file_name().and_then(|n| n.to_str()) else { return };
    let trash = dir.with_file_name(format!("{TRASH}{name}-{}", crate::clock::now_ns()));
    match std::fs::rename(dir, &trash) {
        Ok(()) => {
            let _ = std::fs::remove_dir_all(&trash);
        }
        Err(_) => {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Finish removals a killed call started (`remove_tree`).
fn empty_trash(root: &Path) {
    for n in names(root) {
        if n.starts_with(TRASH) {
            let _ = std::fs::remove_dir_all(root.join(n));
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn age(dir: &Path) {
        let old = std::time::SystemTime::now() - Duration::from_secs(10);
        std::fs::File::open(dir).unwrap().set_modified(old).unwrap();
    }

    /// A supervisor whose launcher was killed before it wrote `supervisor.pid` is alive and
    /// serving: its sockets stay. Once it is gone they go.
    #[test]
    fn stale_sockets_only_of_a_vm_with_no_live_supervisor() {
        let tmp = tempfile::tempdir().unwrap();
        let vdir = tmp.path().join("vm");
        std::fs::create_dir(&vdir).unwrap();
        for s in ["supervisor.sock", "ctl.sock", "qmp.sock"] {
            std::fs::write(vdir.join(s), b"").unwrap();
        }
        // Its command line is `... __supervise VDIR`, as a real supervisor's; not on record.
        let mut fake =
            std::process::Command::new("sh").args(["-c", "sleep 60; :", "__supervise"]).arg(&vdir).spawn().unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !quota::is_supervisor_of(fake.id() as i32, &vdir) {
            assert!(std::time::Instant::now() < deadline, "the fake supervisor did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
        age(&vdir);
        assert!(quota::supervisor_of(&vdir).is_none());
        assert_eq!(remove_stale_sockets(&vdir), 0);
        assert!(vdir.join("supervisor.sock").exists());
        // On record: the cheap path says the same.
        std::fs::write(vdir.join("supervisor.pid"), fake.id().to_string()).unwrap();
        age(&vdir);
        assert_eq!(remove_stale_sockets(&vdir), 0);
        // Killed (as `kill -9` of a supervisor): its sockets are a dead VM's.
        fake.kill().unwrap();
        fake.wait().unwrap();
        age(&vdir);
        assert_eq!(remove_stale_sockets(&vdir), 3);
        assert!(!vdir.join("supervisor.sock").exists() && !vdir.join("qmp.sock").exists());
        // A dir changed just now may be a launch in progress: left alone for a second.
        std::fs::write(vdir.join("ctl.sock"), b"").unwrap();
        assert_eq!(remove_stale_sockets(&vdir), 0);
        age(&vdir);
        assert_eq!(remove_stale_sockets(&vdir), 1);
    }
}

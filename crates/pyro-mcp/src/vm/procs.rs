//! A VM's host processes and files: finding the supervisor(s) of a VM dir (on record or in
//! /proc), killing them for good, and removing the sockets a killed supervisor left. Used by
//! the sweep, spares, templates and deletes alike: nothing here knows what the VM is for.

use super::quota;
use std::path::Path;
use std::time::Duration;

pub(crate) fn older_than(p: &Path, age: Duration) -> bool {
    std::fs::metadata(p).and_then(|m| m.modified()).ok().and_then(|t| t.elapsed().ok()).is_some_and(|e| e >= age)
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
pub fn remove_stale_sockets(vdir: &Path) -> u32 {
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

//! The stopped-disk tools: list, read and export a stopped workspace's whole disk without
//! booting it and without root.
//!
//! List and read boot a throwaway helper VM (`pyro.mode=inspect`) on a fresh overlay of the
//! workspace's disk: the guest kernel mounts it read-only and the agent answers file requests,
//! so the ext4 file system, which the workspace's guest controls, is parsed inside a VM and
//! never by a host tool (e2fsprogs on the host would parse hostile metadata as the user).
//! Nothing on the disk runs and the disk itself is never written. Export is `qemu-img convert`
//! of the layer chain to a raw ext4 image: qemu-img reads only the qcow2 metadata that QEMU
//! and pyro wrote, never the file system inside.
//!
//! Secrets never reach the disk (they live on the host and go to a process's environment per
//! command), and the guest's runtime directories (`/run`, `/proc`, `/sys`, `/dev`) are
//! mount points whose contents are not on the disk: the tools refuse paths under them.

use super::base::{ws_dir, Workspaces};
use super::event::WorkspaceEvent;
use super::files::{FileEntry, FileList, FileRead};
use crate::error::{Context, Error, Result};
use crate::text::clip;
use crate::vm::{self, qemu::Disk, Client, LaunchOptions};
use pyro_proto::Request;
use schemars::JsonSchema;
use serde::Serialize;
use std::path::{Path, PathBuf};

pub const DEFAULT_READ_BYTES: u64 = 64 * 1024;
pub const MAX_READ_BYTES: u64 = 1 << 20;
pub const MAX_LIST_ENTRIES: u32 = 2000;
/// Where the helper VM's agent sees the disk's root.
const MOUNT: &str = "/workspace";
/// Runtime mount points in a running guest: what is under them never reaches the disk.
const RUNTIME_DIRS: &[&str] = &["/run", "/proc", "/sys", "/dev"];

/// `disk export`: the raw image written.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct DiskExport {
    /// The workspace whose disk was exported (its id).
    pub workspace_id: String,
    /// The host file the image was written to.
    pub output_path: PathBuf,
    /// `raw` (a plain ext4 file system image, sparse).
    pub format: String,
    /// The file system in the image (`ext4`).
    pub file_system: String,
    /// The image's size (the guest disk's size); holes take no space.
    pub size_bytes: u64,
}

/// A path on the disk: absolute (`/etc/hosts`) or relative to `/workspace`, normalized
/// lexically (no `..`), and never under a runtime directory.
pub fn disk_path(p: &str) -> Result<String> {
    if p.contains('\0') || p.len() > 4096 {
        return Err(Error::invalid("path contains NUL or is longer than 4096 bytes"));
    }
    let abs = if p.starts_with('/') { p.to_string() } else { format!("/workspace/{p}") };
    let norm = format!("/{}", super::components(&abs, p)?.join("/"));
    if let Some(d) = RUNTIME_DIRS.iter().find(|d| norm == **d || norm.starts_with(&format!("{d}/"))) {
        return Err(Error::invalid(format!("{norm} is under {d}, a runtime directory: nothing there is on the disk")));
    }
    Ok(norm)
}

/// The helper VM's path for a disk path.
fn helper_path(disk: &str) -> String {
    if disk == "/" {
        MOUNT.to_string()
    } else {
        format!("{MOUNT}{disk}")
    }
}

impl Workspaces<'_> {
    /// List the stopped workspace's disk at `path` (default `/`).
    pub fn disk_list(&mut self, key: &str, path: Option<&str>, recursive: bool) -> Result<FileList> {
        let dp = disk_path(path.unwrap_or("/"))?;
        let (id, mut helper, _lock) = self.inspect(key)?;
        let list = Request::FsList { path: helper_path(&dp), recursive, max_entries: MAX_LIST_ENTRIES };
        let (entries, truncated) = helper.entries(&list, MAX_LIST_ENTRIES as u64)?;
        // The agent names entries relative to its /workspace: the disk's root here.
        let entries: Vec<FileEntry> = entries
            .into_iter()
            .map(FileEntry::from)
            .map(|mut e| {
                e.path = format!("/{}", e.path.trim_start_matches('/'));
                e
            })
            // The root listing shows the runtime mount points as the empty dirs they are on
            // the disk; nothing under them is listed.
            .filter(|e| disk_path(&e.path).is_ok() || RUNTIME_DIRS.contains(&e.path.as_str()))
            .collect();
        Ok(FileList {
            workspace_id: id,
            path: dp,
            count: entries.len(),
            entries,
            truncated,
            hint: truncated
                .then(|| format!("listing capped at {MAX_LIST_ENTRIES} entries; list a sub-directory to see the rest")),
        })
    }

    /// Read up to `max_bytes` (default 64 KiB, at most 1 MiB) of a file on the stopped
    /// workspace's disk, from `offset`.
    pub fn disk_read(&mut self, key: &str, path: &str, offset: u64, max_bytes: Option<u64>) -> Result<FileRead> {
        let dp = disk_path(path)?;
        let max = crate::error::in_range("max_bytes", max_bytes.unwrap_or(DEFAULT_READ_BYTES), 1, MAX_READ_BYTES)?;
        let (id, mut helper, _lock) = self.inspect(key)?;
        // Symlinks are not followed: an absolute target would name the helper's own root.
        let f = helper.read_file_at(&helper_path(&dp), offset, max, true)?;
        Ok(FileRead {
            workspace_id: id,
            path: dp,
            size_bytes: f.size,
            offset,
            truncated: f.truncated,
            next_offset: f.truncated.then(|| offset + f.content.len() as u64),
            binary: f.binary,
            mode: f.mode,
            content: f.content,
        })
    }

    /// Write the stopped workspace's disk (all layers merged) to `output` as a raw ext4
    /// image. The output must not exist; it appears only once complete.
    pub fn disk_export(&mut self, key: &str, output: &Path) -> Result<DiskExport> {
        // The same rules as file exports: a new path, never inside a .git directory.
        let (parent, name) = super::export::check_output(output)?;
        let output = &parent.join(name);
        let (r, dir, _lock) = self.stopped_disk(key)?;
        let disk = dir.join("disk.qcow2");
        let size = vm::qcow2_size(&disk)?;
        let part = PathBuf::from(format!("{}.pyro-part", output.display()));
        let _ = std::fs::remove_file(&part);
        let mut cmd = std::process::Command::new(&self.rt()?.qemu_img);
        cmd.args(["convert", "-q", "-f", "qcow2", "-O", "raw"]).arg(&disk).arg(&part);
        let result = cmd
            .output()
            .map_err(|e| Error::internal(format!("cannot run qemu-img: {e}")))
            .and_then(|out| {
                if out.status.success() {
                    Ok(())
                } else {
                    Err(Error::internal(format!(
                        "qemu-img convert failed: {}",
                        clip(String::from_utf8_lossy(&out.stderr).trim(), 300)
                    )))
                }
            })
            .and_then(|()| std::fs::File::open(&part).and_then(|f| f.sync_all()).ctx("writing the image"))
            .and_then(|()| std::fs::rename(&part, output).ctx(format!("moving the image to {}", output.display())));
        if let Err(e) = result {
            let _ = std::fs::remove_file(&part);
            return Err(e);
        }
        self.store.event(
            &r.id,
            &WorkspaceEvent::DiskExport { output: clip(&output.display().to_string(), 300), bytes: size },
        )?;
        Ok(DiskExport {
            workspace_id: r.id,
            output_path: output.to_path_buf(),
            format: "raw".into(),
            file_system: "ext4".into(),
            size_bytes: size,
        })
    }

    /// The workspace, its directory and its lock, if its VM is not running (the lock keeps a
    /// `start` out while the disk is read).
    fn stopped_disk(&mut self, key: &str) -> Result<(super::store::Row, PathBuf, std::fs::File)> {
        let r = self.resolve(key)?;
        let dir = ws_dir(self.paths(), &r.id);
        let lock = self.lock_ws(&r.id)?;
        if self.wait_booting(&r.id).is_some() {
            return Err(Error::state(format!(
                "workspace {} is running; the disk tools read a stopped workspace",
                r.id
            ))
            .hint(format!(
                "stop it first (`pyro workspace stop {}`), or use `file list` / `file read` while it runs",
                r.id
            )));
        }
        if !dir.join("disk.qcow2").exists() {
            return Err(Error::state(format!("workspace {} has no disk (it is being created or deleted)", r.id)));
        }
        Ok((r, dir, lock))
    }

    /// Boot the helper VM on a throwaway overlay of the stopped workspace's disk. The VM and
    /// the overlay go when the returned client is dropped.
    fn inspect(&mut self, key: &str) -> Result<(String, Client, std::fs::File)> {
        let (r, dir, lock) = self.stopped_disk(key)?;
        // A snapshot create cut short is settled first, so the chain read is the live one.
        self.recover_reset(&r.id)?;
        self.recover_pending(&r.id)?;
        let rt = self.rt()?;
        let (_vid, vdir) = vm::new_vm_dir(rt)?;
        let overlay = vdir.join("inspect.qcow2");
        if let Err(e) = vm::create_overlay(&rt.qemu_img, &dir.join("disk.qcow2"), &overlay) {
            let _ = std::fs::remove_dir_all(&vdir);
            return Err(e);
        }
        let vm = vm::launch(
            rt,
            LaunchOptions {
                vcpus: 1,
                mem_mib: crate::limits::MIN_MEM_MIB,
                mode: vm::qemu::VmMode::Inspect,
                disk: Some(Disk { path: overlay, format: "qcow2", cache: "unsafe" }),
                ephemeral: true,
                cleanup: vec![],
                dir: Some(vdir),
                net: None,
                restore: None,
                ram_file: None,
                identity: None,
            },
        )?;
        Ok((r.id, vm.client, lock))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_paths() {
        assert_eq!(disk_path("/etc/hosts").unwrap(), "/etc/hosts");
        assert_eq!(disk_path("src/a.rs").unwrap(), "/workspace/src/a.rs");
        assert_eq!(disk_path("/").unwrap(), "/");
        assert_eq!(disk_path("/usr/./bin//").unwrap(), "/usr/bin");
        assert!(disk_path("/etc/../root").is_err());
        assert!(disk_path("/run/pyro/x").is_err());
        assert!(disk_path("/run").is_err());
        assert!(disk_path("/proc/1/environ").is_err());
        assert!(disk_path("/runner/x").is_ok());
        assert_eq!(helper_path("/"), "/workspace");
        assert_eq!(helper_path("/etc"), "/workspace/etc");
    }
}

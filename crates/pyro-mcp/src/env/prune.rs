//! `env prune`: remove what no one can use any more, never what a disk depends on.
//!
//! Removed: interrupted builds (`.partial-*`), installs that are not `current` (superseded by a
//! newer build or pull), a `current` catalog install whose version the catalog has moved past,
//! installs of names the catalog no longer has, and entries that are not installs at all.
//! Kept and reported: any install a workspace depends on, found two ways (either is enough):
//! the `environment_dir` the workspace recorded in `<data>/pyro.db`, and the qcow2 backing
//! chains of the disks under `<data>/workspaces/*/` (and of running VMs' overlays). An
//! environment whose build lock is held (a pull in progress) is skipped.

use super::catalog;
use super::manifest::{load, EnvKind, Installed};
use crate::error::Result;
use crate::paths::disk_usage;
use crate::paths::Paths;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One environment install that `env prune` removed or kept, and why.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct PruneEntry {
    /// The environment's name, when the entry says.
    pub name: Option<String>,
    /// The entry's path in the environment cache.
    pub path: String,
    /// The install's version, when its manifest says.
    pub version: Option<String>,
    /// Why it was removed or kept (`current`, `in use (...)`, an unknown entry, ...).
    pub reason: String,
    /// Bytes on disk.
    pub size_bytes: u64,
    /// Who depends on it (`workspace <id>`, `vm <id>`), for kept entries.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub used_by: Vec<String>,
}

/// `env prune`.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct PruneReport {
    /// Nothing was removed: the report says what a real prune would do.
    pub dry_run: bool,
    /// Installs removed (or, in a dry run, that would be).
    pub removed: Vec<PruneEntry>,
    /// Installs kept although they are not current: something depends on them.
    pub kept_in_use: Vec<PruneEntry>,
    /// Current installs, kept.
    pub kept_current: Vec<PruneEntry>,
    /// Environments skipped because a pull or build holds their lock.
    pub skipped_busy: Vec<String>,
    /// Bytes of disk freed (or, in a dry run, that would be).
    pub freed_bytes: u64,
}

fn canon(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

/// The backing file a qcow2 image names, if any (read from the header, no qemu-img needed).
pub fn qcow2_backing(path: &Path) -> Option<PathBuf> {
    use std::io::{Read, Seek, SeekFrom};
    use std::os::unix::ffi::OsStrExt;
    let mut f = std::fs::File::open(path).ok()?;
    let mut h = [0u8; 20];
    f.read_exact(&mut h).ok()?;
    if &h[..4] != b"QFI\xfb" {
        return None;
    }
    let off = u64::from_be_bytes(h[8..16].try_into().ok()?);
    let len = u32::from_be_bytes(h[16..20].try_into().ok()?) as usize;
    if off == 0 || len == 0 || len > 4096 {
        return None;
    }
    f.seek(SeekFrom::Start(off)).ok()?;
    let mut name = vec![0u8; len];
    f.read_exact(&mut name).ok()?;
    let p = PathBuf::from(std::ffi::OsStr::from_bytes(&name));
    Some(if p.is_absolute() { p } else { path.parent().unwrap_or(Path::new("/")).join(p) })
}

/// Deepest backing chain followed: a workspace's snapshot layers (at most
/// `workspace::snapshots::MAX_LAYERS`) plus its baseline and the environment's image fit.
pub const MAX_CHAIN: usize = 256;

/// Every file in a disk's backing chain (the disk itself excluded).
pub fn backing_chain(disk: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut cur = disk.to_path_buf();
    for _ in 0..MAX_CHAIN {
        match qcow2_backing(&cur) {
            Some(b) => {
                out.push(b.clone());
                cur = b;
            }
            None => break,
        }
    }
    out
}

/// Install directories something depends on, canonicalised, with who depends on each.
pub fn users(paths: &Paths) -> BTreeMap<PathBuf, Vec<String>> {
    let mut used: BTreeMap<PathBuf, Vec<String>> = BTreeMap::new();
    let mut add = |dir: PathBuf, who: String| {
        let v = used.entry(canon(&dir)).or_default();
        if !v.contains(&who) {
            v.push(who);
        }
    };
    for (id, dir) in workspace_rows(&paths.data) {
        add(PathBuf::from(dir), format!("workspace {id}"));
    }
    let mut scan = |root: PathBuf, label: &str| {
        for ws in std::fs::read_dir(&root).into_iter().flatten().flatten() {
            let id = ws.file_name().to_string_lossy().to_string();
            // A warm spare still there (a real prune removed the idle ones first) counts.
            let label = if crate::vm::spare::is_spare_dir(&ws.path()) { "spare" } else { label };
            for f in std::fs::read_dir(ws.path()).into_iter().flatten().flatten() {
                if f.path().extension().is_some_and(|e| e == "qcow2") {
                    for b in backing_chain(&f.path()) {
                        if let Some(dir) = b.parent() {
                            add(dir.to_path_buf(), format!("{label} {id}"));
                        }
                    }
                }
            }
        }
    };
    scan(paths.data.join("workspaces"), "workspace");
    scan(paths.vms(), "vm");
    used
}

/// (id, environment_dir) of every workspace in the state database, read-only.
fn workspace_rows(data: &Path) -> Vec<(String, String)> {
    use rusqlite::{Connection, OpenFlags};
    let db = data.join("pyro.db");
    if !db.exists() {
        return Vec::new();
    }
    let Ok(c) = Connection::open_with_flags(&db, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
    else {
        return Vec::new();
    };
    let _ = c.busy_timeout(std::time::Duration::from_secs(5));
    let Ok(mut st) = c.prepare("SELECT id, environment_dir FROM workspaces") else { return Vec::new() };
    st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
        .map(|rows| rows.flatten().collect())
        .unwrap_or_default()
}

fn remove(path: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => {
            // Installs are read-only images inside user-owned dirs: removable as they are.
            std::fs::remove_dir_all(path)
        }
        Ok(_) => std::fs::remove_file(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Why an install that is `current` should still go, if it should.
fn stale_current(i: &Installed) -> Option<String> {
    if i.kind == EnvKind::Oci {
        return None;
    }
    match catalog::CATALOG.iter().find(|e| e.name == i.name) {
        None => Some(format!("{} is not in the catalog any more", i.name)),
        Some(e) if e.version != i.version => {
            Some(format!("stale: the catalog has {} {} (rebuilt on next use)", e.name, e.version))
        }
        Some(_) => None,
    }
}

pub fn prune(paths: &Paths, dry_run: bool, progress: &dyn Fn(&str)) -> Result<PruneReport> {
    let mut rep = PruneReport {
        dry_run,
        removed: vec![],
        kept_in_use: vec![],
        kept_current: vec![],
        skipped_busy: vec![],
        freed_bytes: 0,
    };
    if !dry_run {
        // Warm spares run on environments and templates being pruned: they go first.
        crate::vm::spare::evict_all(paths);
    }
    let envs = paths.environments();
    let Ok(rd) = std::fs::read_dir(&envs) else { return Ok(rep) };
    let used = users(paths);
    let mut roots: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
    roots.sort();
    for root in roots {
        let meta = std::fs::symlink_metadata(&root);
        if !meta.as_ref().is_ok_and(|m| m.is_dir()) {
            let entry = PruneEntry {
                name: None,
                path: root.display().to_string(),
                version: None,
                reason: "unknown entry (not an environment)".into(),
                size_bytes: disk_usage(&root),
                used_by: vec![],
            };
            drop_entry(&mut rep, entry, dry_run, progress);
            continue;
        }
        let Some(_lock) = crate::lockfile::try_lock(&root.join(".lock"))? else {
            rep.skipped_busy.push(root.display().to_string());
            continue;
        };
        let current = std::fs::read_to_string(root.join("current")).ok().map(|s| s.trim().to_string());
        let kids: Vec<PathBuf> = std::fs::read_dir(&root).into_iter().flatten().flatten().map(|e| e.path()).collect();
        let holds_installs = kids.iter().any(|k| load(k).is_some() || used.contains_key(&canon(k)));
        if !holds_installs {
            // Nothing installed here (an unknown directory, or only interrupted builds): the
            // whole root goes, reported once.
            let only_partials = kids.iter().all(|k| {
                let n = k.file_name().unwrap_or_default().to_string_lossy();
                n == ".lock" || n == "current" || n.starts_with(".partial-")
            });
            let entry = PruneEntry {
                name: None,
                path: root.display().to_string(),
                version: None,
                reason: if only_partials && kids.len() > 1 {
                    "partial (an interrupted build, nothing installed)".into()
                } else if only_partials {
                    "empty (nothing installed)".into()
                } else {
                    "unknown entry (no installs)".into()
                },
                size_bytes: disk_usage(&root),
                used_by: vec![],
            };
            drop_entry(&mut rep, entry, dry_run, progress);
            continue;
        }
        let current_name = current.as_ref().and_then(|c| load(&root.join(c))).map(|i| i.name);
        let mut children: Vec<PathBuf> =
            std::fs::read_dir(&root).into_iter().flatten().flatten().map(|e| e.path()).collect();
        children.sort();
        let mut installs_left = 0;
        for child in children {
            let fname = child.file_name().unwrap_or_default().to_string_lossy().to_string();
            if fname == ".lock" || fname == "current" {
                continue;
            }
            let size = disk_usage(&child);
            let users_of = used.get(&canon(&child)).cloned().unwrap_or_default();
            let inst = load(&child);
            let is_current = current.as_deref() == Some(fname.as_str());
            let reason = if fname.starts_with(".partial-") {
                "partial (an interrupted build)".to_string()
            } else if let Some(i) = &inst {
                match (is_current, stale_current(i)) {
                    (true, None) => {
                        installs_left += 1;
                        rep.kept_current.push(PruneEntry {
                            name: Some(i.name.clone()),
                            path: child.display().to_string(),
                            version: Some(i.version.clone()),
                            reason: "current".into(),
                            size_bytes: size,
                            used_by: users_of,
                        });
                        continue;
                    }
                    (true, Some(why)) => why,
                    (false, _) => match &current_name {
                        Some(_) => format!("stale: superseded by {}", current.clone().unwrap_or_default()),
                        None => "stale: not the current install".into(),
                    },
                }
            } else {
                "unknown entry (no env.json or base image)".to_string()
            };
            let entry = PruneEntry {
                name: inst.as_ref().map(|i| i.name.clone()),
                path: child.display().to_string(),
                version: inst.as_ref().map(|i| i.version.clone()),
                reason,
                size_bytes: size,
                used_by: users_of.clone(),
            };
            if !users_of.is_empty() {
                installs_left += 1;
                progress(&format!("env: keeping {} ({}): used by {}", entry.path, entry.reason, users_of.join(", ")));
                rep.kept_in_use.push(PruneEntry { reason: format!("in use ({})", entry.reason), ..entry });
                continue;
            }
            drop_entry(&mut rep, entry, dry_run, progress);
        }
        // `current` naming something gone is removed too; an empty root goes entirely.
        if let Some(c) = &current {
            if !dry_run && load(&root.join(c)).is_none() {
                let _ = std::fs::remove_file(root.join("current"));
            }
        }
        if installs_left == 0 && !dry_run {
            let _ = std::fs::remove_dir_all(&root);
        }
    }
    Ok(rep)
}

fn drop_entry(rep: &mut PruneReport, entry: PruneEntry, dry_run: bool, progress: &dyn Fn(&str)) {
    if !dry_run {
        if let Err(e) = remove(Path::new(&entry.path)) {
            progress(&format!("env: could not remove {}: {e}", entry.path));
            return;
        }
    }
    progress(&format!("env: {} {} ({})", if dry_run { "would remove" } else { "removed" }, entry.path, entry.reason));
    rep.freed_bytes += entry.size_bytes;
    rep.removed.push(entry);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_qcow2_backing_names() {
        let dir = tempfile::tempdir().unwrap();
        let mut h = vec![0u8; 512];
        h[..4].copy_from_slice(b"QFI\xfb");
        h[4..8].copy_from_slice(&3u32.to_be_bytes());
        h[8..16].copy_from_slice(&100u64.to_be_bytes());
        h[16..20].copy_from_slice(&8u32.to_be_bytes());
        h[100..108].copy_from_slice(b"base.img");
        std::fs::write(dir.path().join("top.qcow2"), &h).unwrap();
        assert_eq!(qcow2_backing(&dir.path().join("top.qcow2")), Some(dir.path().join("base.img")));
        std::fs::write(dir.path().join("raw"), b"not qcow2 at all").unwrap();
        assert_eq!(qcow2_backing(&dir.path().join("raw")), None);
    }
}

//! Named snapshots of a workspace's whole guest disk: create, list, delete, and the layers
//! `reset --snapshot NAME` goes back to.
//!
//! Layout (`<data>/workspaces/<id>/`): every snapshot layer has a unique, immutable file name,
//! `layer-<random>.qcow2`; the live layer is always reachable as `disk.qcow2` (after a snapshot,
//! a second hard link to the live `layer-*` file), the seeded one is `baseline.qcow2` (the
//! implicit, reserved snapshot `baseline`). SQLite maps names to layer files (`snapshots`
//! table). A snapshot NAME is the layer that was live until it was taken; the new live layer
//! is an empty overlay on top of it, so taking one is O(1) in the workspace's size and the
//! guest keeps running.
//!
//! QEMU reopens a layer by the path it opened it with when the layer turns read-only (it needs
//! a new file descriptor), so a name QEMU uses must point to the same file until then: the new
//! live layer is given to QEMU under its own `layer-*` name, and `disk.qcow2` is moved to it
//! only after QEMU has switched. Creating, in this order:
//! 1. hard-link `disk.qcow2` to `layer-A.qcow2` (the same file under its permanent name);
//! 2. make `layer-B.qcow2`, an empty overlay whose header names `layer-A.qcow2`;
//! 3. write `snapshot.pending` (naming B);
//! 4. freeze the guest's file system, QMP `blockdev-snapshot-sync` (mode `existing`) makes QEMU
//!    write to B, thaw (the guest agent thaws by itself after 20 s);
//! 5. link B as `disk.qcow2` (a rename of a fresh link), remove `snapshot.pending`;
//! 6. insert the name -> A row and its `snapshot_create` event in one transaction.
//!
//! After a crash between 3 and 5, the next operation under the workspace lock (a snapshot
//! call, a reset, a boot) finishes or undoes step 5: with the VM running it asks QEMU which
//! layer it writes (`query-block`); with the VM stopped it always moves `disk.qcow2` to B,
//! which is right either way (B holds what was written since, or is an empty overlay on the
//! same data). So a crash never loses the live layer, and a record never names a missing
//! layer (a layer without a row is an unnamed link in the chain, kept while it is needed).
//! When the VM is not running, step 4 is skipped.
//!
//! Deleting a snapshot removes its name at once; its layer file is kept while any layer above
//! it (a later snapshot, the live disk) still has it in its backing chain, and removed by the
//! next sweep once nothing does (reference by reachability, O(1) per delete; no merge, which
//! would copy data). Sweeps run under the workspace lock after delete, reset and before create.
//! Bounds: 64 named snapshots, 128 layer files (named plus kept ones) per workspace.

use super::base::{vm_dir, ws_dir, Workspaces};
use super::event::WorkspaceEvent;
use super::store::{add_event, db_err};
use crate::clock::now_s;
use crate::error::{Code, Context, Error, Result};
use crate::text::clip;
use crate::vm::{self, Client};
use pyro_proto::Request;
use rusqlite::params;
use schemars::JsonSchema;
use serde::Serialize;
use std::collections::BTreeSet;
use std::path::Path;

/// The implicit snapshot: the seeded disk. Reserved, cannot be deleted.
pub const BASELINE: &str = "baseline";
/// Named snapshots a workspace may have.
pub const MAX_SNAPSHOTS: usize = 64;
/// Layer files a workspace may hold: named ones plus deleted ones still needed by a later
/// layer. Bounds the backing chain QEMU opens at boot.
pub const MAX_LAYERS: usize = 128;

/// One snapshot as `snapshot list` shows it.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct SnapshotInfo {
    /// The snapshot's name (`baseline` for the workspace as created).
    pub name: String,
    /// Host clock, seconds.
    pub created_at: u64,
    /// Bytes its own layer occupies on disk (what it changed since the layer below).
    pub size_bytes: u64,
}

/// `snapshot list`: the baseline first, then the newest first.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct SnapshotList {
    /// The workspace (its id).
    pub workspace_id: String,
    /// How many snapshots are listed.
    pub count: usize,
    /// The snapshots: the baseline first, then the newest first.
    pub snapshots: Vec<SnapshotInfo>,
    /// The snapshot the live disk sits on directly (taken or reset to last), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub live_on: Option<String>,
}

/// `snapshot delete`.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct SnapshotDeleted {
    /// The workspace (its id).
    pub workspace_id: String,
    /// The deleted snapshot's name.
    pub name: String,
    /// Always true: a snapshot that cannot be deleted is an error instead.
    pub deleted: bool,
    /// True when the layer's data stays on disk because a later snapshot or the live disk
    /// is built on it (it goes once nothing needs it).
    pub data_kept: bool,
}

/// A name row: (name, layer file, created_at), newest first.
type SnapRow = (String, String, u64);

/// Snapshot names follow the workspace name rules; `baseline` is taken.
pub fn validate_snapshot_name(n: &str) -> Result<()> {
    if !super::name_ok(n) {
        return Err(Error::invalid(format!("invalid snapshot name '{}'", clip(n, 80)))
            .hint("1-64 characters of letters, digits, '.', '_' or '-', starting with a letter or digit"));
    }
    Ok(())
}

pub(super) fn is_layer_name(n: &str) -> bool {
    n.strip_prefix("layer-")
        .and_then(|r| r.strip_suffix(".qcow2"))
        .is_some_and(|m| !m.is_empty() && m.len() <= 32 && m.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// Layer files of a workspace directory.
pub(super) fn layer_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter(|n| is_layer_name(n))
        .collect()
}

fn sync_dir(dir: &Path) {
    if let Ok(f) = std::fs::File::open(dir) {
        let _ = f.sync_all();
    }
}

/// Marks a snapshot create between its steps 3 and 5 (see the module docs): the new layer's
/// file name.
pub(super) const PENDING: &str = "snapshot.pending";

/// Make `disk.qcow2` a link to `layer` (a fresh link renamed over it: atomic) and clear the
/// pending mark.
pub(super) fn adopt(dir: &Path, layer: &str) -> Result<()> {
    let tmp = dir.join("disk.qcow2.next");
    let _ = std::fs::remove_file(&tmp);
    std::fs::hard_link(dir.join(layer), &tmp).ctx("linking the new live layer")?;
    std::fs::rename(&tmp, dir.join("disk.qcow2")).ctx("installing the new live layer")?;
    sync_dir(dir);
    let _ = std::fs::remove_file(dir.join(PENDING));
    sync_dir(dir);
    Ok(())
}

/// The layer file that is the same file as `disk.qcow2` (the live layer), if it has one.
pub(super) fn live_layer(dir: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let d = std::fs::metadata(dir.join("disk.qcow2")).ok()?;
    layer_files(dir)
        .into_iter()
        .find(|f| std::fs::metadata(dir.join(f)).is_ok_and(|m| m.ino() == d.ino() && m.dev() == d.dev()))
}

/// Whether the VM's QEMU writes to `layer` now (`query-block`: the top image's file name).
fn qemu_writes(qmp: &Path, layer: &str) -> Result<bool> {
    let r = vm::qmp::Qmp::connect(qmp)?.execute("query-block", serde_json::json!({}))?;
    let top = r
        .as_array()
        .and_then(|a| a.iter().find(|d| d["device"] == "root"))
        .and_then(|d| d["inserted"]["image"]["filename"].as_str())
        .unwrap_or_default()
        .to_string();
    // A top whose backing differs from its header gets a `json:{...}` name with the top's
    // own file name first; `layer` can only be the top or not in the chain at all.
    Ok(top.ends_with(&format!("/{layer}")) || top.contains(&format!("/{layer}\"")))
}

impl Workspaces<'_> {
    fn snapshot_rows(&self, id: &str) -> Result<Vec<SnapRow>> {
        let mut st = self
            .store
            .conn
            .prepare(
                "SELECT name, layer, created_at FROM snapshots WHERE workspace_id = ?1 ORDER BY created_at DESC, rowid DESC",
            )
            .map_err(db_err)?;
        let rows = st
            .query_map([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .map_err(db_err)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(db_err)?;
        Ok(rows)
    }

    /// The layer file of snapshot `name` (not the baseline): `not_found` when there is none.
    pub(super) fn snapshot_layer(&self, id: &str, name: &str) -> Result<String> {
        self.snapshot_rows(id)?.into_iter().find(|r| r.0 == name).map(|r| r.1).ok_or_else(|| {
            Error::not_found(format!("workspace {id} has no snapshot '{}'", clip(name, 80)))
                .hint("`pyro workspace snapshot list` shows them")
        })
    }

    /// Names of the workspace's snapshots, newest first (the baseline left out).
    pub(super) fn snapshot_names(&self, id: &str) -> Result<Vec<String>> {
        Ok(self.snapshot_rows(id)?.into_iter().map(|r| r.0).collect())
    }

    /// Finish or undo a snapshot create a crash interrupted between its steps 3 and 5 (see
    /// the module docs). Call under the workspace lock.
    pub(super) fn recover_pending(&self, id: &str) -> Result<()> {
        let dir = ws_dir(self.paths(), id);
        let Ok(next) = std::fs::read_to_string(dir.join(PENDING)) else { return Ok(()) };
        let next = next.trim().to_string();
        if !is_layer_name(&next) || !dir.join(&next).exists() {
            let _ = std::fs::remove_file(dir.join(PENDING));
            return Ok(());
        }
        let vdir = vm_dir(self.paths(), id);
        let running = Client::connect(&vdir.join("supervisor.sock")).is_ok();
        if !running || qemu_writes(&vdir.join("qmp.sock"), &next)? {
            adopt(&dir, &next)
        } else {
            // QEMU never switched: the new layer was never written.
            let _ = std::fs::remove_file(dir.join(&next));
            let _ = std::fs::remove_file(dir.join(PENDING));
            Ok(())
        }
    }

    /// Remove layer files nothing needs (no name, in no backing chain of the live disk or of a
    /// named layer) and leftovers of an interrupted create. Call under the workspace lock.
    /// Returns how many layer files remain.
    pub(super) fn sweep_layers(&self, id: &str) -> Result<usize> {
        let dir = ws_dir(self.paths(), id);
        let rows = self.snapshot_rows(id)?;
        let mut keep: BTreeSet<String> = BTreeSet::new();
        let mut starts = vec![dir.join("disk.qcow2")];
        for (_, layer, _) in &rows {
            keep.insert(layer.clone());
            starts.push(dir.join(layer));
        }
        for s in starts {
            for b in crate::env::prune::backing_chain(&s) {
                if b.parent() == Some(dir.as_path()) {
                    if let Some(n) = b.file_name().and_then(|n| n.to_str()) {
                        keep.insert(n.to_string());
                    }
                }
            }
        }
        if dir.join(PENDING).exists() {
            return Ok(layer_files(&dir).len()); // a create is under way or must be recovered first
        }
        keep.extend(live_layer(&dir));
        let _ = std::fs::remove_file(dir.join("disk.qcow2.next"));
        let mut left = 0;
        for f in layer_files(&dir) {
            if keep.contains(&f) {
                left += 1;
            } else {
                let _ = std::fs::remove_file(dir.join(&f));
            }
        }
        Ok(left)
    }

    /// Take snapshot `name` of the whole guest disk (see the module docs for the steps).
    pub fn snapshot_create(&mut self, key: &str, name: &str) -> Result<SnapshotInfo> {
        validate_snapshot_name(name)?;
        if name == BASELINE {
            return Err(Error::invalid("'baseline' is reserved: it is the seeded disk every workspace has"));
        }
        let r = self.resolve(key)?;
        let dir = ws_dir(self.paths(), &r.id);
        let _lock = self.lock_ws(&r.id)?;
        self.recover_pending(&r.id)?;
        let rows = self.snapshot_rows(&r.id)?;
        if rows.iter().any(|s| s.0 == name) {
            return Err(Error::new(Code::Conflict, format!("workspace {} has a snapshot '{name}' already", r.id))
                .hint("delete it first, or pick another name"));
        }
        if rows.len() >= MAX_SNAPSHOTS {
            return Err(Error::limit(format!("workspace {} has {MAX_SNAPSHOTS} snapshots, the most it may", r.id))
                .hint("delete one first"));
        }
        if self.sweep_layers(&r.id)? >= MAX_LAYERS {
            return Err(Error::limit(format!(
                "workspace {} holds {MAX_LAYERS} disk layers (deleted snapshots later ones still need)",
                r.id
            ))
            .hint("a reset frees the layers only the live disk needed"));
        }
        let disk = dir.join("disk.qcow2");
        if !disk.exists() {
            return Err(Error::state(format!("workspace {} has no disk (it is being created or deleted)", r.id)));
        }
        self.host.cancel_token().check("snapshot create")?;
        let qemu_img = self.rt()?.qemu_img.clone();
        let size = vm::qcow2_size(&disk)?;
        let next = format!("layer-{}.qcow2", vm::new_id());
        // 1. The live layer gets its permanent second name (it has one when an earlier
        // snapshot made it).
        let layer = match live_layer(&dir) {
            Some(l) => l,
            None => {
                let l = format!("layer-{}.qcow2", vm::new_id());
                std::fs::hard_link(&disk, dir.join(&l)).ctx("linking the live layer")?;
                l
            }
        };
        // 2. The new live layer, empty, on top of it.
        vm::create_overlay_on(&qemu_img, &layer, &dir.join(&next), size)?;
        // 3. Say what is under way, so that a crash from here on is finished or undone.
        crate::paths::write_atomic(&dir.join(PENDING), next.as_bytes())?;
        // 4. A running VM switches to it with its file system frozen, so the layer is
        // consistent; a VM that is not running opens the new chain when it boots.
        let live = match Client::connect(&vm_dir(self.paths(), &r.id).join("supervisor.sock")) {
            Ok(mut client) => {
                let switched = client.call(&Request::Freeze).and_then(|_| {
                    let snap = vm::qmp::Qmp::connect(&vm_dir(self.paths(), &r.id).join("qmp.sock")).and_then(|mut q| {
                        q.execute(
                            "blockdev-snapshot-sync",
                            serde_json::json!({"device": "root", "snapshot-file": dir.join(&next), "format": "qcow2", "mode": "existing"}),
                        )
                    });
                    let thaw = client.call(&Request::Thaw);
                    snap.and(thaw)
                });
                if let Err(e) = switched {
                    // Decide from what QEMU writes now, as after a crash.
                    self.recover_pending(&r.id)?;
                    return Err(e);
                }
                true
            }
            Err(_) => false,
        };
        // Test hook: what a `kill -9` at the worst moment leaves (QEMU writes the new layer,
        // `disk.qcow2` still names the old one).
        if std::env::var("PYRO_FAULT").is_ok_and(|v| v == "snapshot-after-switch") {
            std::process::abort();
        }
        // 5. `disk.qcow2` names the new live layer.
        adopt(&dir, &next)?;
        // 6. The name, with its event.
        let created_at = now_s();
        let tx = self.store.tx()?;
        tx.execute("INSERT INTO snapshots VALUES (?1, ?2, ?3, ?4)", params![r.id, name, layer, created_at])
            .map_err(db_err)?;
        tx.execute("UPDATE workspaces SET last_activity_at = ?2 WHERE id = ?1", params![r.id, created_at])
            .map_err(db_err)?;
        add_event(&tx, &r.id, &WorkspaceEvent::SnapshotCreate { name: name.to_string(), vm_running: live })?;
        tx.commit().map_err(db_err)?;
        let size_bytes = crate::paths::disk_usage(&dir.join(&layer));
        Ok(SnapshotInfo { name: name.to_string(), created_at, size_bytes })
    }

    /// The baseline, then every snapshot newest first, with its created time and size on disk.
    pub fn snapshot_list(&self, key: &str) -> Result<SnapshotList> {
        let r = self.resolve(key)?;
        let dir = ws_dir(self.paths(), &r.id);
        let rows = self.snapshot_rows(&r.id)?;
        let below = crate::env::prune::qcow2_backing(&dir.join("disk.qcow2"))
            .and_then(|p| p.file_name().and_then(|n| n.to_str()).map(str::to_string));
        let live_on = below.and_then(|b| {
            if b == "baseline.qcow2" {
                Some(BASELINE.to_string())
            } else {
                rows.iter().find(|r| r.1 == b).map(|r| r.0.clone())
            }
        });
        let mut snapshots = vec![SnapshotInfo {
            name: BASELINE.into(),
            created_at: r.created_at,
            size_bytes: crate::paths::disk_usage(&dir.join("baseline.qcow2")),
        }];
        snapshots.extend(rows.iter().map(|(name, layer, at)| SnapshotInfo {
            name: name.clone(),
            created_at: *at,
            size_bytes: crate::paths::disk_usage(&dir.join(layer)),
        }));
        Ok(SnapshotList { workspace_id: r.id, count: snapshots.len(), snapshots, live_on })
    }

    /// Remove a snapshot's name; its data stays while a later layer needs it.
    pub fn snapshot_delete(&mut self, key: &str, name: &str) -> Result<SnapshotDeleted> {
        if name == BASELINE {
            return Err(Error::invalid("the baseline snapshot cannot be deleted").hint("delete the workspace instead"));
        }
        validate_snapshot_name(name)?;
        let r = self.resolve(key)?;
        let dir = ws_dir(self.paths(), &r.id);
        let _lock = self.lock_ws(&r.id)?;
        self.recover_pending(&r.id)?;
        let layer = self.snapshot_layer(&r.id, name)?;
        let tx = self.store.tx()?;
        tx.execute("DELETE FROM snapshots WHERE workspace_id = ?1 AND name = ?2", params![r.id, name])
            .map_err(db_err)?;
        tx.execute("UPDATE workspaces SET last_activity_at = ?2 WHERE id = ?1", params![r.id, now_s()])
            .map_err(db_err)?;
        add_event(&tx, &r.id, &WorkspaceEvent::SnapshotDelete { name: name.to_string() })?;
        tx.commit().map_err(db_err)?;
        // A crash here leaves an unnamed file that the next sweep removes.
        self.sweep_layers(&r.id)?;
        let data_kept = dir.join(&layer).exists();
        Ok(SnapshotDeleted { workspace_id: r.id, name: name.to_string(), deleted: true, data_kept })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(validate_snapshot_name("before-upgrade.1").is_ok());
        assert!(validate_snapshot_name("-x").is_err());
        assert!(validate_snapshot_name("a/b").is_err());
        assert!(validate_snapshot_name("").is_err());
        assert!(validate_snapshot_name(&"a".repeat(65)).is_err());
        assert!(is_layer_name("layer-0123abcd.qcow2"));
        assert!(!is_layer_name("layer-.qcow2"));
        assert!(!is_layer_name("baseline.qcow2"));
        assert!(!is_layer_name("layer-../x.qcow2"));
    }
}

//! Fork: a new workspace from the current state of another, running or stopped.
//!
//! Disk, O(1): the source's live layer is frozen the way a snapshot freezes it (it gets a
//! permanent `layer-*` name and the source goes on writing to an empty overlay on top), and
//! the fork gets its own empty overlay on the same frozen layer. Frozen layers never change,
//! so the fork's dir holds hard links to them (and to the baseline and its archive): either
//! workspace can be deleted without the other noticing. Layer headers name their backing
//! files by relative names, so a chain is valid in either dir.
//!
//! Memory: a running source is paused for the moment its disk switches and its memory is
//! saved into the fork's dir (`Request::Fork`), then runs on. The fork starts from that
//! memory as a stopped workspace would, but with its own identity (hostname, machine id,
//! fresh entropy and a reseeded kernel RNG) and free host ports for its services. A stopped
//! source's saved memory is linked; a source without any gives a fork that boots from the
//! disk. The result's `started_from` says which (`fork` or `cold`, with a note).
//!
//! Carried over: the baseline (diff and reset work as in the source), the command history
//! and events, named snapshots, service records and secrets. `fork.json` records the origin,
//! shown as `forked_from` in status, list and the summary.
//!
//! A kill at any point: the fork's dir is locked until its row is written, and a sweep
//! removes a dir without a row whose lock is free (as for a create cut short); the source's
//! switch is journaled as a snapshot's is (`snapshot.pending`, see `snapshots`).

use super::base::{ws_dir, Workspaces};
use super::event::WorkspaceEvent;
use super::snapshots::{adopt, is_layer_name, layer_files, live_layer, PENDING};
use super::store::Row;
use super::{ForkOrigin, WorkspaceInfo};
use crate::clock::now_s;
use crate::error::{Context, Error, Result};
use crate::vm;
use crate::vm::template::StartedFrom;
use pyro_proto::{Reply, Request};
use std::collections::BTreeMap;
use std::path::Path;

const ORIGIN: &str = "fork.json";
/// Files of the source's dir a fork links as they are (never written after create).
/// (`template.qcow2`: under the baseline of a workspace made from a warm spare.)
const SHARED: [&str; 4] = ["baseline.qcow2", crate::vm::spare::TEMPLATE_DISK, "baseline.tar", "baseline.json"];

/// `fork`'s options: the new workspace's name and labels (none are copied from the source).
#[derive(Debug, Clone, Default)]
pub struct ForkOptions {
    /// A unique name for the new workspace; none when absent.
    pub name: Option<String>,
    /// Labels of the new workspace.
    pub labels: BTreeMap<String, String>,
}

/// Where the workspace in `dir` was forked from, if it was.
pub fn origin(dir: &Path) -> Option<ForkOrigin> {
    serde_json::from_slice(&std::fs::read(dir.join(ORIGIN)).ok()?).ok()
}

/// Refuse a chain whose files name a backing file inside `dir` by an absolute path (made by
/// a build before 4.3.0): linked into another dir, it would still reach into this one.
fn check_relative(dir: &Path) -> Result<()> {
    let mut files = vec!["disk.qcow2".to_string()];
    files.extend(layer_files(dir));
    for f in files {
        if let Some(b) = vm::qcow2_backing_name(&dir.join(&f))? {
            if Path::new(&b).is_absolute() && Path::new(&b).parent() == Some(dir) {
                return Err(Error::state(format!("its disk layer {f} names its backing file by an absolute path"))
                    .hint("made by an older pyro: reset the workspace (or create a new one) to fork it"));
            }
        }
    }
    Ok(())
}

impl Workspaces<'_> {
    /// Make a new workspace from `key`'s current disk, and its memory when it is running (or
    /// stopped with its memory saved), and start it. See the module docs.
    pub fn fork(&mut self, key: &str, o: &ForkOptions) -> Result<WorkspaceInfo> {
        self.check_new_name_and_labels(o.name.as_deref(), &o.labels)?;
        let src = self.resolve(key)?;
        crate::vm::spare::room_for(self.paths(), src.mem_mib)?;
        self.host.cancel_token().check("workspace fork")?;
        let id = vm::new_id();
        let dir = ws_dir(self.paths(), &id);
        crate::paths::private_dir(&dir)?;
        let lock = crate::lockfile::lock_new(&dir.join("lock"))?;
        if let Err(e) = self.fork_in(&src, &id, &dir, o) {
            self.discard(&id);
            return Err(e);
        }
        drop(lock);
        // From here the fork exists; a start that fails leaves nothing behind either.
        match self.start_as(&id, true) {
            Ok(started) => {
                let how = if started.resumed {
                    StartedFrom { from: "fork".into(), note: None }
                } else {
                    StartedFrom { from: "cold".into(), note: started.note.clone() }
                };
                Ok(WorkspaceInfo { started_from: Some(how), ..started.workspace })
            }
            Err(e) => {
                let _ = self.delete(&id);
                Err(e)
            }
        }
    }

    /// The fork's files and row, with the source locked (see the module docs for the steps).
    fn fork_in(&mut self, src: &Row, id: &str, dir: &Path, o: &ForkOptions) -> Result<()> {
        let sdir = ws_dir(self.paths(), &src.id);
        let _src_lock = self.lock_ws(&src.id)?;
        self.recover_reset(&src.id)?;
        self.recover_pending(&src.id)?;
        let disk = sdir.join("disk.qcow2");
        if !disk.exists() {
            return Err(Error::state(format!("workspace {} has no disk (it is being created or deleted)", src.id)));
        }
        check_relative(&sdir)?;
        let client = self.wait_booting(&src.id);
        crate::clock::trace("fork: source locked");
        let qemu_img = self.rt()?.qemu_img.clone();
        let size = vm::qcow2_size(&disk)?;
        // The source's live layer under its permanent name: frozen from the switch on.
        let frozen = match live_layer(&sdir) {
            Some(l) => l,
            None => {
                let l = format!("layer-{}.qcow2", vm::new_id());
                std::fs::hard_link(&disk, sdir.join(&l)).ctx("linking the live layer")?;
                l
            }
        };
        // The fork's links, before the source's next layer exists (that one is the source's).
        for f in SHARED.iter().map(|s| s.to_string()).chain(layer_files(&sdir)) {
            if sdir.join(&f).exists() {
                std::fs::hard_link(sdir.join(&f), dir.join(&f)).ctx("linking the source's disk layers")?;
            }
        }
        vm::create_overlay_on(&qemu_img, &frozen, &dir.join("disk.qcow2"), size)?;
        let next = format!("layer-{}.qcow2", vm::new_id());
        debug_assert!(is_layer_name(&next));
        vm::create_overlay_on(&qemu_img, &frozen, &sdir.join(&next), size)?;
        crate::paths::write_atomic(&sdir.join(PENDING), next.as_bytes())?;
        crate::clock::trace("fork: layers made");
        let memory_path = dir.join(super::stop::MEMORY);
        let saved = match client {
            Some(mut c) => {
                let msg = Request::Fork {
                    path: memory_path.display().to_string(),
                    layer: sdir.join(&next).display().to_string(),
                };
                match c.call(&msg) {
                    Ok(Reply::Suspended { ms, .. }) => Some(ms),
                    other => {
                        // Decide from what QEMU writes now, as after a crash.
                        self.recover_pending(&src.id)?;
                        return Err(match other {
                            Err(e) => e,
                            Ok(_) => Error::guest("the supervisor sent a malformed reply to a fork"),
                        });
                    }
                }
            }
            None => None,
        };
        crate::clock::trace("fork: memory saved");
        // The source writes to its next layer from here (or will, when it boots).
        adopt(&sdir, &next)?;
        let memory = if saved.is_some() {
            super::stop::adopt_memory(self, src, dir, &memory_path)?;
            true
        } else if let Some(m) = super::stop::memory_file(&sdir) {
            super::stop::adopt_memory(self, src, dir, &m)?;
            true
        } else {
            false
        };
        super::secrets::copy(self.paths(), &src.id, id)?;
        let at = now_s();
        let from =
            ForkOrigin { workspace_id: src.id.clone(), name: src.name.clone(), at, memory, source_paused_ms: saved };
        crate::paths::write_atomic(&dir.join(ORIGIN), &serde_json::to_vec(&from).unwrap())?;
        crate::paths::write_atomic(&dir.join(super::stop::FORK_FRESH), b"")?;
        // Host ports are the source's: the fork's are picked afresh.
        let mut network = src.network.clone();
        network.published.clear();
        for p in &mut network.options.publish {
            p.host_port = 0;
        }
        let row = Row {
            id: id.to_string(),
            name: o.name.clone(),
            labels: o.labels.clone(),
            created_at: at,
            last_activity_at: at,
            network,
            ..src.clone()
        };
        self.store.insert_fork(
            &row,
            &src.id,
            &WorkspaceEvent::Fork { from: src.id.clone(), memory, source_paused_ms: saved },
        )?;
        self.copy_services(&src.id, id)?;
        self.store.event(&src.id, &WorkspaceEvent::Forked { to: id.to_string(), memory, paused_ms: saved })?;
        Ok(())
    }
}

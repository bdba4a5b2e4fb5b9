//! Preparing a warm spare (see `vm::spare` for what spares are and who does what): a VM
//! booted from the template as a workspace VM would be, given its own identity, run once so
//! its code is translated, and paused.

use super::base::{ws_dir, Workspaces};
use crate::env::Installed;
use crate::error::{Error, Result};
use crate::vm;
use crate::vm::spare::{self, SpareInfo, MAX_SPARES, SPARE, TEMPLATE_DISK};
use crate::vm::spare_use;
use crate::vm::template::{DiskUse, Found, Shape};

impl Workspaces<'_> {
    /// Prepare a spare for `env` in `shape` (see the module doc): its id and expiry, or None
    /// when none is needed or possible now (one exists or is being made, no template, no room).
    pub(crate) fn prepare_spare(&self, env: &Installed, shape: Shape) -> Result<Option<(String, u64)>> {
        let rt = self.rt()?;
        if !spare_use::usable(rt, shape) {
            return Ok(None);
        }
        crate::paths::private_dir(&spare::root(self.paths()))?;
        // One preparer at a time (so `MAX_SPARES` holds); others just leave.
        let Ok(Some(_plock)) = crate::lockfile::try_lock(&spare::root(self.paths()).join(".spare-prepare.lock")) else {
            return Ok(None);
        };
        let have = spare::list(self.paths());
        let env_dir = env.dir.display().to_string();
        if have.len() >= MAX_SPARES
            || have
                .iter()
                .any(|(_, i)| i.environment_dir == env_dir && i.vcpus == shape.vcpus && i.mem_mib == shape.mem_mib)
        {
            return Ok(None);
        }
        let Found::Usable(template) = crate::vm::template::lookup(rt, &env.base(), shape)? else { return Ok(None) };
        // Room for the spare and one more VM of its size: a spare never takes the last slot.
        let mut limits = vm::quota::Limits::from_env();
        limits.max_vms = limits.max_vms.map(|m| m.saturating_sub(1));
        if vm::quota::check(&self.paths().vms(), 2 * shape.mem_mib as u64, limits).is_err() {
            return Ok(None);
        }
        let id = vm::new_id();
        let dir = ws_dir(self.paths(), &id);
        crate::paths::private_dir(&dir)?;
        let _lock = crate::lockfile::lock_new(&dir.join("lock"))?;
        let now = crate::clock::now_s();
        let info = SpareInfo {
            environment: env.name.clone(),
            environment_dir: env_dir,
            template_key: template.info.key.clone(),
            vcpus: shape.vcpus,
            mem_mib: shape.mem_mib,
            created_at: now,
            expires_at: now + spare::ttl_s(),
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
            spare_use::warm_up(&mut vm.client)?;
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
                spare::discard(self.paths(), &id);
                Err(e)
            }
        }
    }
}

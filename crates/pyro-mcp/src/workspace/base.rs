//! The handle every workspace operation hangs off: `Workspaces` (the state database and the
//! host), where a workspace's files and VM live, and the VM's recorded state. Operations are
//! `impl Workspaces` blocks in their own modules (lifecycle, files, snapshots, ...); this one
//! imports none of them, so they can all import it.

use super::secrets::{self, Redactor, SecretEnv};
use super::store::Store;
use crate::error::Result;
use crate::paths::Paths;
use crate::runtime::{Host, Runtime};
use crate::vm::spec::VmState;
use std::path::PathBuf;

/// Workspaces of one user: the state database, and the runtime (QEMU, kernel, ...) resolved
/// only when an operation needs a VM, so `list`, `status` and `logs` stay cheap.
pub struct Workspaces<'a> {
    pub(super) host: &'a Host,
    pub(super) store: Store,
}

pub fn ws_dir(paths: &Paths, id: &str) -> PathBuf {
    paths.data.join("workspaces").join(id)
}

pub(crate) fn vm_dir(paths: &Paths, id: &str) -> PathBuf {
    paths.vms().join(id)
}

/// Why the VM's network stack stopped, if its supervisor recorded that.
pub(super) fn vm_net_error(paths: &Paths, id: &str) -> Option<String> {
    let st: VmState = serde_json::from_slice(&std::fs::read(vm_dir(paths, id).join("state.json")).ok()?).ok()?;
    st.net_error
}

/// The VM's state as its supervisor last recorded it, checked against reality.
pub fn vm_state(paths: &Paths, id: &str) -> (String, Option<String>) {
    let dir = vm_dir(paths, id);
    let st: Option<VmState> = std::fs::read(dir.join("state.json")).ok().and_then(|b| serde_json::from_slice(&b).ok());
    match st {
        None => ("stopped".into(), Some("no VM has run since the host started; the next operation boots it".into())),
        Some(s) if s.state == "running" => {
            let alive = crate::proc::alive_and_ours(s.supervisor_pid as i32);
            if alive && dir.join("supervisor.sock").exists() {
                ("running".into(), None)
            } else {
                ("dead".into(), Some("the VM's supervisor is gone (killed or crashed)".into()))
            }
        }
        Some(s) => (s.state, s.reason),
    }
}

impl<'a> Workspaces<'a> {
    /// Open the store and settle what killed calls left behind (`recover`): every call starts
    /// from a consistent state. A sweep that fails is not this call's failure.
    pub fn open(host: &'a Host) -> Result<Workspaces<'a>> {
        let mut w = Self::open_unswept(host)?;
        let _ = w.sweep();
        Ok(w)
    }

    /// The store alone, nothing settled (`Pyro::repair` sweeps and reports).
    pub(crate) fn open_unswept(host: &'a Host) -> Result<Workspaces<'a>> {
        Ok(Workspaces { host, store: Store::open(&host.paths().data)? })
    }

    pub(super) fn rt(&self) -> Result<&'a Runtime> {
        self.host.runtime()
    }

    /// The directories this user's workspaces, caches and VMs live in.
    pub fn paths(&self) -> &'a Paths {
        self.host.paths()
    }
}

/// Secrets as operations use them (see `secrets`).
impl Workspaces<'_> {
    /// Resolve `SECRET[=ENV]` specs of a workspace (by id) to environment pairs for one process.
    pub(crate) fn secret_env(&self, workspace_id: &str, specs: &[SecretEnv]) -> Result<Vec<(String, String)>> {
        secrets::env_for(self.paths(), workspace_id, specs)
    }

    /// The redactor of a workspace (by id): empty when it has no secrets.
    pub(crate) fn redactor(&self, workspace_id: &str) -> Result<Redactor> {
        secrets::redactor(self.paths(), workspace_id)
    }
}

//! A started throwaway VM you can run several commands in, then delete: the lifecycle
//! `pyro demo` shows and the building block one-shot runs use.

use crate::error::{Error, Result};
use crate::limits::validate_command;
use crate::runtime::Runtime;
use crate::vm::{self, qemu::Disk, LaunchOptions, Vm};
use pyro_proto::{Command, ExecRequest, ExecResult, Request};
use schemars::JsonSchema;
use serde::Serialize;

/// A started throwaway VM to run several commands in; deleted by `delete` or when dropped.
pub struct VmSession {
    vm: Option<Vm>,
    /// The VM's id (its runtime directory's name).
    pub id: String,
    /// The environment it booted.
    pub environment: String,
    /// Milliseconds from launch until the guest agent answered.
    pub boot_ms: u64,
    /// Booted cold or restored from a warm template (and why not, if it should have been).
    pub started_from: crate::vm::template::StartedFrom,
    /// The accelerator it runs under (`kvm` or `tcg`).
    pub accelerator: String,
}

/// What deleting a VM did (part of every run result).
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Cleanup {
    /// The VM that was deleted (its id).
    pub vm_id: String,
    /// Its runtime directory is gone.
    pub deleted: bool,
    /// How it came to be deleted (on request, already deleted, ...).
    pub reason: String,
}

/// Output of one exec: the result header plus the captured bytes.
#[derive(Debug, Clone, Serialize)]
pub struct ExecOutput {
    /// The exit code, signal, timing and how much of each stream was kept.
    #[serde(flatten)]
    pub result: ExecResult,
    /// The captured stdout bytes (head and tail around a marker when capped).
    #[serde(serialize_with = "crate::text::lossy")]
    pub stdout: Vec<u8>,
    /// The captured stderr bytes (head and tail around a marker when capped).
    #[serde(serialize_with = "crate::text::lossy")]
    pub stderr: Vec<u8>,
}

impl VmSession {
    /// Boot a VM of `environment` (installed first if needed) with no network, and wait for its
    /// agent.
    pub fn start(
        rt: &Runtime,
        environment: &str,
        vcpus: u32,
        mem_mib: u32,
        progress: &dyn Fn(&str),
    ) -> Result<VmSession> {
        Self::start_with(rt, environment, vcpus, mem_mib, &crate::net::NetworkOptions::default(), progress)
    }

    /// `start` with a network (validated by the caller).
    pub fn start_with(
        rt: &Runtime,
        environment: &str,
        vcpus: u32,
        mem_mib: u32,
        network: &crate::net::NetworkOptions,
        progress: &dyn Fn(&str),
    ) -> Result<VmSession> {
        let mut network = network.clone();
        network.validate()?;
        let network = &network;
        let env = crate::env::ensure(rt, environment, progress)?;
        let (id, dir) = vm::new_vm_dir(rt)?;
        let overlay = dir.join("disk.qcow2");
        let shape = crate::vm::template::Shape { vcpus, mem_mib, nic: network.policy.has_nic() };
        let identity = vm::Identity::fresh(&id);
        let mut launch = |restore: Option<vm::Restore>| {
            vm::launch(
                rt,
                LaunchOptions {
                    vcpus,
                    mem_mib,
                    mode: crate::vm::qemu::VmMode::Run,
                    disk: Some(Disk { path: overlay.clone(), format: "qcow2", cache: "unsafe" }),
                    ephemeral: true,
                    cleanup: vec![],
                    net: network.policy.has_nic().then(|| crate::net::NetSpec {
                        options: network.clone(),
                        denials_path: dir.join("denials.json"),
                        nameservers: crate::net::host_nameservers(),
                    }),
                    dir: Some(dir.clone()),
                    restore,
                    ram_file: None,
                    identity: Some(identity.clone()),
                },
            )
        };
        let (vm, started_from) = match crate::vm::template::start(
            rt,
            &env.base(),
            shape,
            &overlay,
            crate::vm::template::DiskUse::Copy,
            &mut launch,
        ) {
            Ok(v) => v,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(e);
            }
        };
        Ok(VmSession {
            id,
            environment: env.name,
            boot_ms: vm.boot.boot_ms,
            started_from,
            accelerator: rt.accel.accel.as_str().into(),
            vm: Some(vm),
        })
    }

    /// Run a command with default cwd and no extra environment.
    pub fn exec(&mut self, command: Command, timeout_s: u64, max_output_bytes: u64) -> Result<ExecOutput> {
        self.exec_request(ExecRequest {
            command,
            cwd: None,
            env: vec![],
            timeout_ms: timeout_s.max(1) * 1000,
            max_output_bytes,
            progress_ms: 0,
        })
    }

    /// Run one exec request as given (the caller sets cwd, environment, timeout and caps).
    pub fn exec_request(&mut self, req: ExecRequest) -> Result<ExecOutput> {
        self.exec_watched(req, None, &mut |_| {})
    }

    /// `exec_request` that stops when `cancel` is set and reports progress ticks (sent every
    /// `req.progress_ms`).
    pub(crate) fn exec_watched(
        &mut self,
        req: ExecRequest,
        cancel: Option<&crate::Cancel>,
        progress: &mut dyn FnMut(&crate::vm::client::ExecTick),
    ) -> Result<ExecOutput> {
        validate_command(&req.command)?;
        let vm = self.vm.as_mut().ok_or_else(|| Error::state("the VM was deleted"))?;
        crate::limits::validate_env(&req.env)?;
        vm.client.set_cancel(cancel.cloned());
        let out = vm.client.exec_with(req, progress);
        vm.client.set_cancel(None);
        let (result, stdout, stderr) = out?;
        Ok(ExecOutput { result, stdout, stderr })
    }

    /// One protocol round trip to the guest agent and back (no process started).
    pub fn ping(&mut self) -> Result<std::time::Duration> {
        let vm = self.vm.as_mut().ok_or_else(|| Error::state("the VM was deleted"))?;
        let t = std::time::Instant::now();
        vm.client.call(&Request::Ping)?;
        Ok(t.elapsed())
    }

    /// Stop the VM and remove its overlay, sockets and logs; waits until that is done.
    pub fn delete(mut self) -> Cleanup {
        self.teardown()
    }

    fn teardown(&mut self) -> Cleanup {
        let Some(mut vm) = self.vm.take() else {
            return Cleanup { vm_id: self.id.clone(), deleted: true, reason: "already deleted".into() };
        };
        let ok = vm.client.shutdown().is_ok();
        Cleanup { vm_id: self.id.clone(), deleted: ok && !vm.dir.exists(), reason: "deleted on request".into() }
    }
}

impl Drop for VmSession {
    fn drop(&mut self) {
        self.teardown();
    }
}

//! Creating, finding, booting, resetting and deleting workspaces, and running commands in
//! them. A workspace's VM is started on demand: if it died (killed, host reboot), the next
//! operation that needs the guest boots it again from its disk and says so.

use super::base::{vm_dir, vm_net_error, vm_state, ws_dir, Workspaces};
use super::event::WorkspaceEvent;
use super::recover::{reset_journal, ResetJournal};
use super::secrets::{self, SecretEnv, SecretSpec};
use super::store::{gone, CommandRow, Row, WorkspaceNetwork};
use super::{guest_path, seed, validate_label, validate_name, WorkspaceInfo, WorkspaceList, WorkspaceSeed};
use crate::clock::now_s;
use crate::error::{Code, Context, Error, Result};
use crate::text::clip;
use crate::vm::{self, qemu::Disk, Client, LaunchOptions};
use pyro_proto::{Command, ExecRequest, Request};
use schemars::JsonSchema;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const DEFAULT_EXEC_OUTPUT: u64 = 256 * 1024;
/// Output kept per stream in the command history (`logs`).
pub const HISTORY_OUTPUT: usize = 16 * 1024;

/// `create` with everything it takes; `Default` gives no seed, no network and no secrets (the
/// environment must be set).
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    /// The environment the workspace runs, e.g. `debian:12`.
    pub environment: String,
    /// A host directory or .tar(.gz) archive to seed /workspace from; empty when absent.
    pub seed_path: Option<PathBuf>,
    /// A unique name to refer to the workspace by, besides its id.
    pub name: Option<String>,
    /// Labels to tag the workspace with.
    pub labels: BTreeMap<String, String>,
    /// vCPUs of its VM; the default when absent.
    pub vcpu_count: Option<u32>,
    /// Memory of its VM in MiB; the default when absent.
    pub mem_mib: Option<u32>,
    /// Network policy, published ports and allow list (default: no network).
    pub network: crate::net::NetworkOptions,
    /// Secrets, kept on the host and given to a process only when its exec asks for them.
    pub secrets: Vec<SecretSpec>,
    /// `seed_path` was resolved and confined by the caller (the MCP server): refuse it if it
    /// resolves elsewhere when opened (a symlink swapped in after the check).
    pub seed_path_resolved: bool,
}

/// `exec` with everything it takes; `ExecOptions::new(command)` has the defaults.
#[derive(Debug, Clone)]
pub struct ExecOptions {
    /// The command: an argv vector, or one string for /bin/sh -c.
    pub command: Command,
    /// Inside /workspace (default `/workspace`).
    pub cwd: Option<String>,
    /// Seconds before the command's process group is killed.
    pub timeout_s: u64,
    /// Environment variables added to the command's, name and value.
    pub env: Vec<(String, String)>,
    /// Secrets put into this command's environment (`SECRET[=ENV_NAME]`).
    pub secret_env: Vec<SecretEnv>,
    /// Per stream, head and tail kept around a marker (default 256 KiB, 1 KiB..=16 MiB).
    pub max_output_bytes: Option<u64>,
}

impl ExecOptions {
    /// An exec of `command` in /workspace with the default timeout and output cap, and no extra
    /// environment.
    pub fn new(command: Command) -> ExecOptions {
        ExecOptions {
            command,
            cwd: None,
            timeout_s: crate::run::DEFAULT_TIMEOUT_S,
            env: Vec::new(),
            secret_env: Vec::new(),
            max_output_bytes: None,
        }
    }
}

/// `update`'s changes; each field left at its default changes nothing.
#[derive(Debug, Clone, Default)]
pub struct UpdateOptions {
    /// The workspace's new name.
    pub name: Option<String>,
    /// Remove the workspace's name (exclusive with `name`).
    pub clear_name: bool,
    /// Labels to add or overwrite.
    pub labels: BTreeMap<String, String>,
    /// Keys of the labels to remove.
    pub clear_labels: Vec<String>,
}

/// `exec`: one command in a workspace, as recorded in its history.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ExecRecord {
    /// The workspace (its id).
    pub workspace_id: String,
    /// The command's number in the workspace's history.
    pub sequence: u64,
    /// The command as run, on one line (secrets redacted).
    pub command: String,
    /// The working directory it ran in.
    pub cwd: String,
    /// The command's exit code (124 when the timeout killed it, 128+N for signal N).
    pub exit_code: i32,
    /// The timeout killed the command.
    pub timed_out: bool,
    /// The caller cancelled it; the guest killed its process group.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub cancelled: bool,
    /// Milliseconds the command ran in the guest.
    pub duration_ms: u64,
    /// Always `guest_vm`: workspace commands run only in their VM.
    pub execution_mode: String,
    /// What the command wrote to stdout, as text (invalid UTF-8 replaced, secrets redacted), head
    /// and tail when capped.
    #[serde(serialize_with = "crate::text::lossy")]
    #[schemars(with = "String")]
    pub stdout: Vec<u8>,
    /// What the command wrote to stderr, as text (invalid UTF-8 replaced, secrets redacted), head
    /// and tail when capped.
    #[serde(serialize_with = "crate::text::lossy")]
    #[schemars(with = "String")]
    pub stderr: Vec<u8>,
    /// stdout was longer than the cap; its middle was cut.
    pub stdout_truncated: bool,
    /// stderr was longer than the cap; its middle was cut.
    pub stderr_truncated: bool,
    /// Set when the VM had stopped and was booted again for this call.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vm_restarted: Option<String>,
}

/// `delete`: the workspace is gone.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct DeleteReport {
    /// The deleted workspace (its id).
    pub workspace_id: String,
    /// Always true: a workspace that cannot be deleted is an error instead.
    pub deleted: bool,
    /// What was removed.
    pub reason: String,
}

/// `logs`: the command history since the last reset.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Logs {
    /// The workspace (its id).
    pub workspace_id: String,
    /// How many commands are listed.
    pub count: usize,
    /// The commands run since the last reset, oldest first.
    pub entries: Vec<super::store::CommandRow>,
}

impl<'a> Workspaces<'a> {
    /// What callers see of the workspace in row `r`, with its VM's state checked against
    /// reality (touches no VM).
    pub fn info(&self, r: &Row) -> WorkspaceInfo {
        let (state, reason) = match vm_state(self.paths(), &r.id) {
            (s, reason) if s == "running" => (s, reason),
            // A supervisor is up but not serving yet: a boot or a start in progress (perhaps
            // for a caller that was killed; the next call waits for it).
            _ if crate::vm::quota::supervisor_of(&vm_dir(self.paths(), &r.id)).is_some() => {
                ("starting".to_string(), Some("its VM is booting or resuming".to_string()))
            }
            (s, reason) => match super::stop::stopped_reason(&ws_dir(self.paths(), &r.id)) {
                Some(why) => ("stopped".to_string(), Some(why)),
                // Not stopped on request: the next operation boots it, so it is not "stopped".
                None if s == "stopped" => ("dead".to_string(), reason),
                None => (s, reason),
            },
        };
        WorkspaceInfo {
            id: r.id.clone(),
            name: r.name.clone(),
            labels: r.labels.clone(),
            environment: r.environment.clone(),
            state,
            state_reason: reason,
            vcpu_count: r.vcpu_count,
            mem_mib: r.mem_mib,
            created_at: r.created_at,
            last_activity_at: r.last_activity_at,
            reset_count: r.reset_count,
            last_reset_at: r.last_reset_at,
            command_count: r.command_count,
            seed: r.seed.clone(),
            network_policy: r.network.options.policy,
            published_ports: r.network.published.clone(),
            allow_domains: r.network.options.allow_domains.clone(),
            network_error: vm_net_error(self.paths(), &r.id),
            secrets: secrets::list(self.paths(), &r.id),
            forked_from: super::fork::origin(&ws_dir(self.paths(), &r.id)),
            started_from: None,
        }
    }

    /// The workspace guest's identity: `pyro-<id>` and the machine id it keeps across boots
    /// (`machine-id` in its dir, made at create).
    pub(super) fn identity(&self, id: &str) -> Result<vm::Identity> {
        let f = ws_dir(self.paths(), id).join("machine-id");
        let existing = std::fs::read_to_string(&f).ok().map(|s| s.trim().to_string());
        let machine_id = match existing.filter(|s| s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit())) {
            Some(m) => m,
            None => {
                let m = vm::random_hex(16);
                crate::paths::write_atomic(&f, m.as_bytes())?;
                m
            }
        };
        Ok(vm::Identity { hostname: vm::Identity::hostname(id), machine_id })
    }

    /// A new workspace's name (valid, not in use) and labels (valid), checked before anything
    /// is made: create and fork.
    pub(super) fn check_new_name_and_labels(
        &self,
        name: Option<&str>,
        labels: &BTreeMap<String, String>,
    ) -> Result<()> {
        if let Some(n) = name {
            validate_name(n)?;
            if self.store.list()?.iter().any(|r| r.name.as_deref() == Some(n)) {
                return Err(Error::new(Code::Conflict, format!("a workspace named '{n}' already exists")));
            }
        }
        for (k, v) in labels {
            validate_label(k, v)?;
        }
        Ok(())
    }

    /// Create a workspace: boot its VM (from a warm template or spare when one fits), seed
    /// /workspace and record the baseline that `diff` and `reset` go back to.
    pub fn create(&mut self, o: &CreateOptions, progress: &dyn Fn(&str)) -> Result<WorkspaceInfo> {
        crate::clock::trace("create: begin");
        let mut probe = crate::run::RunOptions::new(o.environment.clone(), Command::Shell("true".into()));
        probe.vcpus = o.vcpu_count.unwrap_or(crate::run::DEFAULT_VCPUS);
        probe.mem_mib = o.mem_mib.unwrap_or(crate::run::DEFAULT_MEM_MIB);
        crate::run::validate(&probe)?;
        let shape =
            crate::vm::template::Shape { vcpus: probe.vcpus, mem_mib: probe.mem_mib, nic: o.network.policy.has_nic() };
        let spares = crate::vm::spare_use::usable(self.rt()?, shape);
        if !spares {
            // Early, before an environment is built or a seed packed; `launch` checks again
            // under its lock. (With spares, after trying to take one: that needs no room.)
            crate::vm::spare::room_for(self.paths(), probe.mem_mib)?;
        }
        self.check_new_name_and_labels(o.name.as_deref(), &o.labels)?;
        if let Some(p) = &o.seed_path {
            seed::detect_kind_in(p, o.seed_path_resolved)?;
        }
        // Read and check every secret before anything is made (a missing file creates nothing).
        let secret_values = secrets::resolve_specs(&o.secrets)?;
        let mut network = o.network.clone();
        network.validate()?;
        network.check_ports_free()?;
        let o = &CreateOptions { network, ..o.clone() };
        // A build or pull that finishes is kept (it is a shared cache); a cancel after it
        // creates nothing.
        let env = crate::env::ensure(self.rt()?, &o.environment, progress)?;
        crate::clock::trace("create: environment ready");
        self.host.cancel_token().check("workspace create")?;
        // A warm spare of this environment and shape, if one waits: its dir, id and running
        // VM become this workspace's (see `spare`).
        let claimed = if spares { crate::vm::spare_use::claim(self.rt()?, &env.base(), shape) } else { None };
        if spares && claimed.is_none() {
            // Spares give way to a workspace (see `spare`).
            crate::vm::spare::room_for(self.paths(), probe.mem_mib)?;
        }
        let (id, _lock, spare_vm) = match claimed {
            Some((id, lock, vm)) => (id, lock, Some(vm)),
            None => {
                let id = vm::new_id();
                crate::paths::private_dir(&ws_dir(self.paths(), &id))?;
                // Held until the row is written: a sweep leaves a locked dir alone, and takes
                // over one whose creator was killed (everything made so far is removed; see
                // `recover`).
                let lock = crate::lockfile::lock_new(&ws_dir(self.paths(), &id).join("lock"))?;
                (id, lock, None)
            }
        };
        let dir = ws_dir(self.paths(), &id);
        let result = secrets::store(self.paths(), &id, &secret_values).and_then(|_| match spare_vm {
            Some(vm) => {
                let seed_info = self.pack_seed(&dir, o, progress)?;
                let started = crate::vm::template::StartedFrom { from: "spare".into(), note: None };
                self.finish_create(&id, &dir, &env, o, &probe, (vm, started), seed_info, true, progress)
            }
            None => self.create_in(&id, &dir, &env, o, &probe, progress),
        });
        match &result {
            Ok(_) => crate::vm::spare::settled(&dir),
            Err(_) => {
                self.stop_vm(&id);
                self.discard(&id);
            }
        }
        // Leave a spare for the next create of this kind (in the background; once the
        // template exists).
        if spares && result.is_ok() {
            crate::vm::spare_use::refill_in_background(self.rt()?, &env.base(), shape);
        }
        result
    }

    /// Pack the seed, if the create has one, into `baseline.tar` (and its manifest).
    fn pack_seed(&self, dir: &Path, o: &CreateOptions, progress: &dyn Fn(&str)) -> Result<Option<seed::SeedInfo>> {
        let Some(p) = &o.seed_path else { return Ok(None) };
        progress(&format!("workspace: packing seed {}", p.display()));
        let mut f = std::fs::File::create(dir.join("baseline.tar")).ctx("creating baseline archive")?;
        let info = seed::build_seed_tar_in(p, o.seed_path_resolved, &mut f)?;
        f.sync_all().ctx("writing baseline archive")?;
        crate::paths::write_atomic(&dir.join("baseline.json"), &serde_json::to_vec(&info.manifest).unwrap())?;
        Ok(Some(info))
    }

    fn create_in(
        &mut self,
        id: &str,
        dir: &Path,
        env: &crate::env::Installed,
        o: &CreateOptions,
        probe: &crate::run::RunOptions,
        progress: &dyn Fn(&str),
    ) -> Result<WorkspaceInfo> {
        let seed_info = self.pack_seed(dir, o, progress)?;
        progress("workspace: booting");
        let network = WorkspaceNetwork { options: o.network.clone(), published: Vec::new() };
        let shape = crate::vm::template::Shape {
            vcpus: probe.vcpus,
            mem_mib: probe.mem_mib,
            nic: network.options.policy.has_nic(),
        };
        let identity = self.identity(id)?;
        let base = dir.join("baseline.qcow2");
        let live = dir.join("disk.qcow2");
        // Unseeded, the baseline is the disk the VM starts from (the template's, as saved with
        // its memory, or the environment's image), and the VM runs on an overlay of it from the
        // start: nothing is ever written to the baseline, so it needs no freeze and no switch.
        // Seeded, the VM runs on the baseline until the seed is in, then switches.
        let seeded = seed_info.is_some();
        let how = if seeded { crate::vm::template::DiskUse::Copy } else { crate::vm::template::DiskUse::Link };
        let started = crate::vm::template::start(self.rt()?, &env.base(), shape, &base, how, &mut |restore| {
            if !seeded {
                let _ = std::fs::remove_file(&live);
                vm::create_overlay_on(&self.rt()?.qemu_img, "baseline.qcow2", &live, vm::qcow2_size(&base)?)?;
            }
            let disk = if seeded { &base } else { &live };
            self.boot(id, disk, (probe.vcpus, probe.mem_mib), &network, restore, Some(identity.clone()))
        })?;
        self.finish_create(id, dir, env, o, probe, started, seed_info, seeded, progress)
    }

    /// A create's steps once its VM runs: the seed unpacked, the baseline frozen (`switch`:
    /// the VM runs on `baseline.qcow2` and moves to `disk.qcow2`, made here unless a spare
    /// made it), and the row written.
    #[allow(clippy::too_many_arguments)]
    fn finish_create(
        &mut self,
        id: &str,
        dir: &Path,
        env: &crate::env::Installed,
        o: &CreateOptions,
        probe: &crate::run::RunOptions,
        (mut vm, started_from): (vm::Vm, crate::vm::template::StartedFrom),
        seed_info: Option<seed::SeedInfo>,
        switch: bool,
        progress: &dyn Fn(&str),
    ) -> Result<WorkspaceInfo> {
        let network = WorkspaceNetwork { options: o.network.clone(), published: vm.boot.published.clone() };
        crate::clock::trace("create: vm up");
        let cancel = self.host.cancel_token().clone();
        cancel.check("workspace create")?;
        if let Some(info) = &seed_info {
            progress(&format!("workspace: seeding {} entries ({} bytes)", info.entries, info.bytes));
            let mut r = std::io::BufReader::new(std::fs::File::open(dir.join("baseline.tar")).ctx("opening baseline")?);
            vm.client.unpack("/workspace", false, &mut r, &mut |_| {})?;
        }
        if switch {
            // Freeze the layer the VM ran on as the baseline: the guest file system is frozen
            // while QEMU switches writes to a new overlay, so the baseline is consistent. The
            // overlay names the baseline by a relative name, so the chain stays valid wherever
            // its files are linked (a fork links them into its own dir).
            let base = dir.join("baseline.qcow2");
            let live = dir.join("disk.qcow2");
            if !live.exists() {
                vm::create_overlay_on(&self.rt()?.qemu_img, "baseline.qcow2", &live, vm::qcow2_size(&base)?)?;
            }
            vm.client.call(&Request::Freeze)?;
            let snap = vm::qmp::Qmp::connect(&vm.dir.join("qmp.sock")).and_then(|mut q| {
                q.execute(
                    "blockdev-snapshot-sync",
                    serde_json::json!({"device": "root", "snapshot-file": live, "format": "qcow2", "mode": "existing"}),
                )
            });
            vm.client.call(&Request::Thaw)?;
            snap?;
            crate::clock::trace("create: baseline frozen");
        }
        let seed = seed_info.as_ref().map(|i| WorkspaceSeed {
            kind: match i.kind {
                seed::SourceKind::Directory => "directory",
                seed::SourceKind::GitCheckout => "git_checkout",
                seed::SourceKind::Tar => "tar",
                seed::SourceKind::TarGz => "tar_gz",
            }
            .into(),
            source: i.source.clone(),
            entries: i.entries,
            bytes: i.bytes,
        });
        let row = Row {
            id: id.to_string(),
            name: o.name.clone(),
            labels: o.labels.clone(),
            environment: env.name.clone(),
            environment_dir: env.dir.display().to_string(),
            vcpu_count: probe.vcpus,
            mem_mib: probe.mem_mib,
            created_at: now_s(),
            last_activity_at: now_s(),
            reset_count: 0,
            last_reset_at: None,
            command_count: 0,
            seed: seed.clone(),
            network,
        };
        // The last point a cancel undoes everything (the caller removes the VM and files).
        cancel.check("workspace create")?;
        let secrets = secrets::list(self.paths(), id);
        self.store.insert(
            &row,
            &WorkspaceEvent::Create {
                environment: env.name.clone(),
                seed: seed.clone(),
                secrets,
                started_from: Some(started_from.clone()),
            },
        )?;
        crate::clock::trace("create: recorded");
        Ok(WorkspaceInfo { started_from: Some(started_from), ..self.info(&row) })
    }

    pub(super) fn boot(
        &self,
        id: &str,
        disk: &Path,
        (vcpus, mem_mib): (u32, u32),
        network: &WorkspaceNetwork,
        restore: Option<vm::Restore>,
        identity: Option<vm::Identity>,
    ) -> Result<vm::Vm> {
        let vdir = vm_dir(self.paths(), id);
        let net = network.options.policy.has_nic().then(|| {
            let mut options = network.options.clone();
            // A reboot keeps the host ports the workspace had (those picked for port 0 too).
            for p in &mut options.publish {
                if let Some(old) = network.published.iter().find(|o| o.guest_port == p.guest_port) {
                    p.host_port = old.host_port;
                }
            }
            crate::net::NetSpec {
                options,
                denials_path: ws_dir(self.paths(), id).join("denials.json"),
                nameservers: crate::net::host_nameservers(),
            }
        });
        // Never two VMs on one disk: whatever still runs from this dir goes first.
        crate::vm::procs::kill_vm(&vdir);
        let _ = std::fs::remove_dir_all(&vdir);
        crate::paths::private_dir(&vdir)?;
        vm::launch(
            self.rt()?,
            LaunchOptions {
                vcpus,
                mem_mib,
                mode: vm::qemu::VmMode::Run,
                disk: Some(Disk { path: disk.to_path_buf(), format: "qcow2", cache: "writeback" }),
                ephemeral: false,
                cleanup: vec![],
                dir: Some(vdir),
                net,
                restore,
                ram_file: None,
                identity,
            },
        )
    }

    /// Boot a workspace's VM from its live disk and record the ports it published.
    pub(super) fn reboot(&mut self, r: &Row, disk: &Path) -> Result<vm::Vm> {
        self.reboot_with(r, disk, None, false)
    }

    /// `reboot`, or with `restore`, resume the guest saved in that file (see `stop`): when it
    /// is this workspace's own it keeps its identity; a fork's copy (`fresh`) and a boot from
    /// the disk get the workspace's identity (and fresh entropy) before the first command.
    pub(super) fn reboot_with(&mut self, r: &Row, disk: &Path, restore: Option<&Path>, fresh: bool) -> Result<vm::Vm> {
        let identity = if restore.is_some() && !fresh { None } else { Some(self.identity(&r.id)?) };
        let vm =
            self.boot(&r.id, disk, (r.vcpu_count, r.mem_mib), &r.network, restore.map(vm::Restore::memory), identity)?;
        if vm.boot.published != r.network.published {
            let network = WorkspaceNetwork { options: r.network.options.clone(), published: vm.boot.published.clone() };
            self.store.set_network(&r.id, &network)?;
        }
        Ok(vm)
    }

    /// Stop the VM if one runs (its disk stays). Waits until the supervisor is gone. A VM
    /// still booting for a killed caller has no socket yet: its supervisor is killed.
    pub(super) fn stop_vm(&self, id: &str) {
        let vdir = vm_dir(self.paths(), id);
        if let Ok(mut c) = Client::connect(&vdir.join("supervisor.sock")) {
            let _ = c.shutdown();
        }
        crate::vm::procs::kill_vm(&vdir);
    }

    /// Take a workspace's lock (mutations of its disk and VM hold it), and make sure it still
    /// exists once held: a delete that came first is `not_found`, never an I/O error.
    pub(super) fn lock_ws(&self, id: &str) -> Result<std::fs::File> {
        let lock = crate::lockfile::lock(&ws_dir(self.paths(), id).join("lock"));
        if self.store.get(id)?.is_none() {
            return Err(gone(id));
        }
        lock
    }

    /// A VM still booting for a caller that was killed (its supervisor is detached and goes
    /// on, a start or a boot cut short): wait for it rather than start a second QEMU on the
    /// same disk. The client once it is up; None when no supervisor is (any longer) there.
    /// Call under the workspace lock.
    pub(super) fn wait_booting(&self, id: &str) -> Option<Client> {
        let vdir = vm_dir(self.paths(), id);
        let sock = vdir.join("supervisor.sock");
        let deadline = std::time::Instant::now() + std::time::Duration::from_millis(vm::boot_timeout_ms());
        while !crate::vm::procs::supervisors_of(&vdir).is_empty() && std::time::Instant::now() < deadline {
            if let Ok(c) = Client::connect(&sock) {
                return Some(c);
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Client::connect(&sock).ok()
    }

    /// The workspace's stored row, found by its id, a unique id prefix or its unique name.
    pub fn resolve(&self, key: &str) -> Result<Row> {
        self.store.resolve(key)
    }

    /// A client for the workspace's guest, booting the VM again if it is not running.
    pub fn connect(&mut self, r: &Row) -> Result<(Client, Option<String>)> {
        let sock = vm_dir(self.paths(), &r.id).join("supervisor.sock");
        if let Ok(c) = Client::connect(&sock) {
            return Ok((c, None));
        }
        let _lock = self.lock_ws(&r.id)?;
        if let Ok(c) = Client::connect(&sock) {
            return Ok((c, None)); // someone else booted it meanwhile
        }
        // A delete may have won the lock first: never boot the VM of a deleted workspace.
        if self.store.get(&r.id)?.is_none() {
            return Err(gone(&r.id));
        }
        if let Some(c) = self.wait_booting(&r.id) {
            return Ok((c, None));
        }
        self.recover_reset(&r.id)?;
        if super::stop::stopped_reason(&ws_dir(self.paths(), &r.id)).is_some() {
            return Err(Error::state(format!("workspace {} is stopped", r.id))
                .hint(format!("start it with `pyro workspace start {}`", r.id)));
        }
        let (state, reason) = vm_state(self.paths(), &r.id);
        let why = format!(
            "the VM was {state}{}; booted it again from its disk",
            reason.map(|r| format!(" ({r})")).unwrap_or_default()
        );
        // A snapshot create cut short leaves its new live layer to be put in place first.
        self.recover_pending(&r.id)?;
        let disk = ws_dir(self.paths(), &r.id).join("disk.qcow2");
        if !disk.exists() {
            return Err(Error::state(format!("workspace {} has no disk (it is being created or deleted)", r.id)));
        }
        let vm = self.reboot(r, &disk)?;
        self.store.event(&r.id, &WorkspaceEvent::VmRestarted { reason: why.to_string() })?;
        Ok((vm.client, Some(why)))
    }

    /// Every workspace, most recently active first.
    pub fn list(&self) -> Result<WorkspaceList> {
        let workspaces: Vec<WorkspaceInfo> = self.store.list()?.iter().map(|r| self.info(r)).collect();
        Ok(WorkspaceList { count: workspaces.len(), workspaces })
    }

    /// One workspace's state (and why its VM stopped, if it did); touches no VM.
    pub fn status(&self, key: &str) -> Result<WorkspaceInfo> {
        Ok(self.info(&self.resolve(key)?))
    }

    /// Rename a workspace or change its labels; touches no VM.
    pub fn update(&mut self, key: &str, o: &UpdateOptions) -> Result<WorkspaceInfo> {
        let mut r = self.resolve(key)?;
        if o.name.is_some() && o.clear_name {
            return Err(Error::invalid("--name and --clear-name are exclusive"));
        }
        let mut name_change: Option<Option<String>> = None;
        if let Some(n) = &o.name {
            validate_name(n)?;
            r.name = Some(n.clone());
            name_change = Some(Some(n.clone()));
        }
        if o.clear_name {
            r.name = None;
            name_change = Some(None);
        }
        for (k, v) in &o.labels {
            validate_label(k, v)?;
            r.labels.insert(k.clone(), v.clone());
        }
        for k in &o.clear_labels {
            r.labels.remove(k);
        }
        if o.name.is_none() && !o.clear_name && o.labels.is_empty() && o.clear_labels.is_empty() {
            return Err(Error::invalid("nothing to update").hint("give --name, --clear-name, --label or --clear-label"));
        }
        let labels = (!o.labels.is_empty() || !o.clear_labels.is_empty()).then(|| r.labels.clone());
        self.store.update_meta(&r, &WorkspaceEvent::Update { name: name_change, labels })?;
        Ok(self.info(&self.resolve(&r.id)?))
    }

    /// Run a command in the workspace. `max_output_bytes` caps each stream (head and tail
    /// kept around a marker; default 256 KiB, 1 KiB..=1 MiB).
    pub fn exec(
        &mut self,
        key: &str,
        command: Command,
        cwd: Option<&str>,
        timeout_s: u64,
        env: Vec<(String, String)>,
        max_output_bytes: Option<u64>,
    ) -> Result<ExecRecord> {
        let o =
            ExecOptions { cwd: cwd.map(str::to_string), timeout_s, env, max_output_bytes, ..ExecOptions::new(command) };
        self.exec_with(key, &o)
    }

    /// Run a command with all options, secrets in its environment included. Everything the
    /// guest sends back (output, progress lines, errors) and the history it leaves has the
    /// workspace's secret values replaced by `[secret:NAME]`.
    pub fn exec_with(&mut self, key: &str, o: &ExecOptions) -> Result<ExecRecord> {
        let command = o.command.clone();
        crate::run::validate_command(&command)?;
        crate::limits::validate_env(&o.env)?;
        crate::limits::validate_timeout(o.timeout_s)?;
        let max_output_bytes = o.max_output_bytes.unwrap_or(DEFAULT_EXEC_OUTPUT);
        crate::limits::validate_output_cap(max_output_bytes)?;
        let cwd = guest_path(o.cwd.as_deref().unwrap_or("/workspace"))?;
        let r = self.resolve(key)?;
        let secret_env = self.secret_env(&r.id, &o.secret_env)?;
        if let Some((k, _)) = secret_env.iter().find(|(k, _)| o.env.iter().any(|(e, _)| e == k)) {
            return Err(Error::invalid(format!("environment variable {k} is set by both env and secret_env")));
        }
        let redactor = self.redactor(&r.id)?;
        let mut env = o.env.clone();
        env.extend(secret_env);
        crate::limits::validate_env(&env)?;
        self.host.cancel_token().check("the command")?;
        crate::clock::trace("exec: checked");
        let (mut client, restarted) = self.connect(&r)?;
        crate::clock::trace("exec: connected");
        client.set_cancel(Some(self.host.cancel_token().clone()));
        let req = ExecRequest {
            command: command.clone(),
            cwd: Some(cwd.clone()),
            env,
            timeout_ms: o.timeout_s * 1000,
            max_output_bytes,
            progress_ms: self.host.exec_progress_ms(),
        };
        // In the history before it runs: a command that never reports back (it crashed the
        // guest, this process was killed) stays listed, unfinished.
        let shown = redactor.redact_str(&command.display());
        let sequence = self.store.start_command(&r.id, &shown, &cwd)?;
        crate::clock::trace("exec: started in history");
        let progress = self.host.progress();
        let (res, mut stdout, mut stderr) = client
            .exec_with(req, &mut |t| progress(&redactor.redact_str(&crate::run::exec_progress_line(t))))
            .map_err(|e| redactor.redact_error(e))?;
        crate::clock::trace("exec: guest replied");
        // Redact before anything is stored or returned: the history never holds a value.
        redactor.redact_vec(&mut stdout);
        redactor.redact_vec(&mut stderr);
        let used: Vec<&str> = o.secret_env.iter().map(|s| s.secret.as_str()).collect();
        let hist = |b: &[u8]| {
            let s = String::from_utf8_lossy(b);
            if s.len() > HISTORY_OUTPUT {
                let tail: String =
                    s.chars().rev().take(HISTORY_OUTPUT / 2).collect::<Vec<_>>().into_iter().rev().collect();
                format!(
                    "{}{}{}",
                    clip(&s, HISTORY_OUTPUT / 2),
                    pyro_proto::truncation_marker((s.len() - HISTORY_OUTPUT) as u64),
                    tail
                )
            } else {
                s.to_string()
            }
        };
        let row = CommandRow {
            sequence: 0,
            command: shown,
            cwd: cwd.clone(),
            exit_code: res.exit_code,
            timed_out: res.timed_out,
            cancelled: res.cancelled,
            finished: true,
            duration_ms: res.duration_ms,
            recorded_at: now_s(),
            stdout: hist(&stdout),
            stderr: hist(&stderr),
            stdout_truncated: res.stdout.truncated || stdout.len() > HISTORY_OUTPUT,
            stderr_truncated: res.stderr.truncated || stderr.len() > HISTORY_OUTPUT,
        };
        self.store.finish_command(&r.id, sequence, &row, &used)?;
        crate::clock::trace("exec: recorded");
        Ok(ExecRecord {
            workspace_id: r.id,
            sequence,
            command: row.command,
            cwd,
            exit_code: res.exit_code,
            timed_out: res.timed_out,
            cancelled: res.cancelled,
            duration_ms: res.duration_ms,
            execution_mode: "guest_vm".into(),
            stdout,
            stderr,
            stdout_truncated: res.stdout.truncated,
            stderr_truncated: res.stderr.truncated,
            vm_restarted: restarted,
        })
    }

    /// Back to the baseline: the live layer is replaced by a fresh overlay (O(1)), the VM
    /// boots again, and the history since the last reset starts empty.
    /// A cancel before the reset starts changes nothing; once the old VM is stopped the reset
    /// runs to the end (a few seconds), so a workspace is never left half reset.
    pub fn reset(&mut self, key: &str) -> Result<WorkspaceInfo> {
        self.reset_to(key, None)
    }

    /// `reset`, to a named snapshot (`None` or `baseline`: the baseline). The fresh live
    /// layer's backing file is the snapshot's layer, so this is O(1) as well; the diff keeps
    /// comparing against the seed, and the summary says which snapshot the reset went to.
    pub fn reset_to(&mut self, key: &str, snapshot: Option<&str>) -> Result<WorkspaceInfo> {
        let snapshot = snapshot.filter(|n| *n != super::snapshots::BASELINE);
        if let Some(n) = snapshot {
            super::snapshots::validate_snapshot_name(n)?;
        }
        let r = self.resolve(key)?;
        let dir = ws_dir(self.paths(), &r.id);
        let _lock = self.lock_ws(&r.id)?;
        // Read again under the lock: a delete or another reset may have come first.
        let r = self.store.get(&r.id)?.ok_or_else(|| gone(&r.id))?;
        self.recover_reset(&r.id)?;
        // A missing snapshot is refused before anything is stopped.
        let layer = match snapshot {
            Some(n) => Some(self.snapshot_layer(&r.id, n)?),
            None => None,
        };
        self.host.cancel_token().check("workspace reset")?;
        self.stop_vm(&r.id);
        // The live layer is replaced below; a snapshot create cut short is settled first so
        // the sweep afterwards sees a clean state.
        self.recover_pending(&r.id)?;
        // Saved memory belongs to the disk being replaced: it goes first (a reset also
        // starts a stopped workspace).
        super::stop::clear(&dir)?;
        // Journaled: from here a kill -9 leaves `reset.json`, and the next call under the lock
        // finishes the reset (`recover_reset`) before it uses the disk.
        let journal = ResetJournal { snapshot: snapshot.map(str::to_string), from_generation: r.reset_count };
        crate::paths::write_atomic(&reset_journal(&dir), &serde_json::to_vec(&journal).unwrap())?;
        self.finish_reset(&r.id, &journal, layer.as_deref())?;
        let disk = dir.join("disk.qcow2");
        self.reboot(&r, &disk)?;
        Ok(self.info(&self.resolve(&r.id)?))
    }

    /// The reset's steps after its journal is written, each safe to run again: a fresh live
    /// layer put in place, the new generation recorded (once: the journal knows the count it
    /// started from), the journal removed, unneeded layers swept. Call under the lock.
    fn finish_reset(&mut self, id: &str, journal: &ResetJournal, layer: Option<&str>) -> Result<()> {
        let dir = ws_dir(self.paths(), id);
        let generation = self.store.get(id)?.ok_or_else(|| gone(id))?.reset_count;
        if generation == journal.from_generation {
            let disk = dir.join("disk.qcow2");
            let fresh = dir.join("disk.qcow2.new");
            let _ = std::fs::remove_file(&fresh);
            match layer {
                None => vm::create_overlay_on(
                    &self.rt()?.qemu_img,
                    "baseline.qcow2",
                    &fresh,
                    vm::qcow2_size(&dir.join("baseline.qcow2"))?,
                )?,
                Some(l) => vm::create_overlay_on(&self.rt()?.qemu_img, l, &fresh, vm::qcow2_size(&dir.join(l))?)?,
            }
            std::fs::rename(&fresh, &disk).ctx("replacing the live disk")?;
            self.store.record_reset(id, journal.snapshot.as_deref())?;
        }
        let _ = std::fs::remove_file(reset_journal(&dir));
        // The old live layer is gone: layers only it needed (deleted snapshots) go too.
        self.sweep_layers(id)?;
        Ok(())
    }

    /// Finish a reset a killed call left journaled (see `reset_to`). Call under the lock.
    pub(super) fn recover_reset(&mut self, id: &str) -> Result<()> {
        let dir = ws_dir(self.paths(), id);
        let Ok(bytes) = std::fs::read(reset_journal(&dir)) else { return Ok(()) };
        let Ok(journal) = serde_json::from_slice::<ResetJournal>(&bytes) else {
            // Written atomically, so unreadable means not ours: nothing was replaced yet.
            let _ = std::fs::remove_file(reset_journal(&dir));
            return Ok(());
        };
        self.stop_vm(id);
        let layer = match &journal.snapshot {
            Some(n) => Some(self.snapshot_layer(id, n)?),
            None => None,
        };
        self.finish_reset(id, &journal, layer.as_deref())
    }

    /// The row goes first (under the lock), so from that instant the workspace is not listed,
    /// no call can boot its VM again (`connect` checks the row under the lock), and commands
    /// racing it get `not_found` or `guest_unavailable`. The rest is cleanup that a sweep
    /// finishes if this call is killed (`recover`).
    pub fn delete(&mut self, key: &str) -> Result<DeleteReport> {
        let r = self.resolve(key)?;
        // Another delete may have won: then this one is `not_found`.
        let lock = self.lock_ws(&r.id)?;
        self.store.delete(&r.id)?;
        self.stop_vm(&r.id);
        self.discard(&r.id);
        drop(lock);
        Ok(DeleteReport {
            workspace_id: r.id,
            deleted: true,
            reason: "deleted on request: VM stopped, disks and runtime files removed".into(),
        })
    }

    /// The workspace's command history since its last reset, output included (capped per command).
    pub fn logs(&self, key: &str) -> Result<Logs> {
        let r = self.resolve(key)?;
        let mut entries = self.store.commands(&r.id)?;
        // Stored redacted already; redacting again on the way out costs little.
        let redactor = self.redactor(&r.id)?;
        if !redactor.is_empty() {
            for e in &mut entries {
                for s in [&mut e.command, &mut e.stdout, &mut e.stderr] {
                    *s = redactor.redact_str(s);
                }
            }
        }
        Ok(Logs { workspace_id: r.id, count: entries.len(), entries })
    }
}

//! Warm templates: boot a guest once, save it, and start new VMs by restoring it.
//!
//! Under emulation almost all of a cold start is the kernel booting (about 1.2 s here before
//! our init runs). A template is a guest booted once for one *shape* (environment digest,
//! QEMU, accelerator, CPU model, kernel, initramfs (guest agent), vCPUs, memory, NIC or not),
//! saved with QEMU migration right after its agent answered and ran one command:
//!
//! - `<environment dir>/templates/<key hash>/disk.qcow2`: the overlay of the environment's
//!   base image the template guest ran on (only what booting wrote: a few hundred KiB);
//! - `memory.vmstate`: its memory and device state; `template.json`: the key and figures.
//!
//! A new VM copies `disk.qcow2` (a fresh overlay of the base, with the template's few
//! writes) and restores `memory.vmstate` onto the copy, so disk and memory match. Then it takes
//! its own identity (`vm::Identity`: fresh entropy and an RNG reseed, the clock, hostname,
//! machine id) before anything runs in it. The template files are only read, never by two
//! writers, and nothing keeps using them after the restore: removing a template (prune,
//! rebuild) never breaks a workspace.
//!
//! A template is built in the background by a detached `pyro __template` the first time a
//! shape is asked for (that create boots cold), and up front for the default shape by
//! `pyro env pull`. `PYRO_TEMPLATES=off` (or `Pyro::with_templates(false)`) turns them off. A
//! template whose restore fails is removed (the next use rebuilds it) and the VM boots cold,
//! with a note saying so.

use crate::error::{Context, Error, Result};
use crate::runtime::Runtime;
use crate::vm::{self, qemu, qemu::Disk, LaunchOptions};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

const DISK: &str = "disk.qcow2";
const MEMORY: &str = "memory.vmstate";
const META: &str = "template.json";
/// The template guest's RAM (see `qemu::use_ram_file`): sparse, as big as its memory.
const RAM: &str = "ram.img";

/// What the VM layer knows of an installed environment: its name, its identity (digest), and
/// its directory, which holds the base image and the templates made from it. The environment
/// layer makes one (`Installed::base`).
#[derive(Debug, Clone)]
pub struct BaseImage {
    pub name: String,
    pub digest: String,
    pub dir: PathBuf,
}

impl BaseImage {
    /// The read-only ext4 base image every VM of the environment runs on (through an overlay).
    pub fn image(&self) -> PathBuf {
        self.dir.join("base.ext4")
    }
}

/// What a template is for, besides the runtime and environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    pub vcpus: u32,
    pub mem_mib: u32,
    /// A NIC (any network policy but `off`): the device set differs, so the template does.
    pub nic: bool,
}

/// `template.json`, and what `env inspect` and `doctor` show of a template.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct TemplateInfo {
    /// Everything the saved state depends on, as one line.
    pub key: String,
    pub vcpus: u32,
    pub mem_mib: u32,
    pub nic: bool,
    pub built_at: u64,
    /// Bytes of saved memory and device state.
    pub memory_bytes: u64,
    /// sha256 of the saved device state (checked before every restore: it is small).
    #[serde(default)]
    pub memory_sha256: String,
    /// Bytes of the template's disk overlay (copied for every VM started from it; linked as
    /// the baseline of an unseeded workspace).
    pub disk_bytes: u64,
    /// Bytes of guest RAM the template's RAM file holds (the rest of it is a hole): what
    /// restored VMs map privately and share until they write.
    #[serde(default)]
    pub ram_bytes: u64,
    /// Cold boot of the template guest, and the save.
    pub boot_ms: u64,
    pub save_ms: u64,
    /// Whether this host's runtime can restore it now (false: another QEMU, kernel or agent).
    #[serde(default)]
    pub current: bool,
}

/// How a VM came up: `cold` (a kernel boot), `template` (a warm template restored), `fork`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
pub struct StartedFrom {
    pub from: String,
    /// Why a template was not used, when one should have been (fell back to a cold boot).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl StartedFrom {
    pub fn cold(note: Option<String>) -> StartedFrom {
        StartedFrom { from: "cold".into(), note }
    }
}

/// QEMU's version line. Running `qemu-system-x86_64 --version` costs 100-250 ms here (it
/// loads all of QEMU's libraries), more than a restore: the answer is kept in
/// `<cache>/qemu-version.json` for the binary's path, size, modification time and inode.
fn qemu_version(rt: &Runtime) -> Result<String> {
    use std::os::unix::fs::MetadataExt;
    // Unusable QEMU: the VM cannot start at all (guest_unavailable, as launching says).
    let m = std::fs::metadata(&rt.qemu).map_err(|e| {
        Error::guest(format!("QEMU {} cannot be used: {e}", rt.qemu.display()))
            .hint("install qemu-system-x86 (`pyro doctor --fix`), or unset PYRO_QEMU")
    })?;
    let id = format!("{} {} {} {}", rt.qemu.display(), m.len(), m.mtime_nsec() + m.mtime() * 1_000_000_000, m.ino());
    let file = rt.paths.cache.join("qemu-version.json");
    let cached: Option<(String, String)> = std::fs::read(&file).ok().and_then(|b| serde_json::from_slice(&b).ok());
    if let Some((cid, v)) = cached {
        if cid == id && !v.is_empty() {
            return Ok(v);
        }
    }
    let v = qemu::version(&rt.qemu)?;
    if !v.is_empty() {
        let _ = crate::paths::write_atomic(&file, &serde_json::to_vec(&(id, &v)).unwrap());
    }
    Ok(v)
}

/// What saved memory of a guest of this shape must match to be restored on this host: the
/// QEMU, accelerator, CPU model and kernel, and the machine's shape (`stop` keys saved
/// memory on it too).
pub fn machine_key(rt: &Runtime, vcpus: u32, mem_mib: u32, nic: bool) -> Result<String> {
    Ok(format!(
        "{} | {} | cpu {} | smp {vcpus} | mem {mem_mib} | nic {nic} | kernel {}",
        qemu_version(rt)?,
        rt.accel.accel.as_str(),
        qemu::cpu_model(rt.accel.accel),
        rt.kernel.release
    ))
}

/// How templates are made (part of the key): 2 since the guest file system is synced and
/// frozen before the save (its disk is an unseeded workspace's baseline). Older ones are
/// stale, and rebuilt.
const FORMAT: u32 = 2;

/// A template's key: the format, the machine key, the initramfs (its name carries the guest
/// agent's digest) and the environment's digest.
pub(crate) fn key(rt: &Runtime, env: &BaseImage, shape: Shape) -> Result<String> {
    let initramfs = rt.initramfs.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    Ok(format!(
        "template v{FORMAT} | {} | {initramfs} | env {}",
        machine_key(rt, shape.vcpus, shape.mem_mib, shape.nic)?,
        env.digest
    ))
}

fn root(env: &BaseImage) -> PathBuf {
    env.dir.join("templates")
}

fn dir_for(env: &BaseImage, key: &str) -> PathBuf {
    let h = hex::encode(Sha256::digest(key.as_bytes()));
    root(env).join(&h[..16])
}

fn read_meta(dir: &Path) -> Option<TemplateInfo> {
    serde_json::from_slice(&std::fs::read(dir.join(META)).ok()?).ok()
}

/// A usable template: files there, key equal, device state of the recorded digest, RAM file
/// of the guest's size (a damaged one is refused here; one that still fails to restore is
/// removed then).
pub struct Template {
    pub dir: PathBuf,
    pub info: TemplateInfo,
}

impl Template {
    /// What a VM is restored from: the device state, and the RAM file mapped privately.
    pub fn restore(&self) -> vm::Restore {
        vm::Restore { memory: self.dir.join(MEMORY), ram: Some(self.dir.join(RAM)) }
    }

    /// Put the template's disk at `overlay`: a fresh overlay of the base, as booting left it.
    /// `Disk::Copy` when the VM will write to it; `Disk::Link` (a hard link, a copy across file
    /// systems) when nothing ever writes it, only overlays on it: the template's file is never
    /// written after its build (a rebuild makes a new directory), so sharing its inode is safe.
    pub fn place_disk(&self, overlay: &Path, how: DiskUse) -> Result<()> {
        let src = self.dir.join(DISK);
        if how == DiskUse::Link && std::fs::hard_link(&src, overlay).is_ok() {
            return Ok(());
        }
        std::fs::copy(&src, overlay).ctx("copying the template's disk")?;
        Ok(())
    }

    /// Remove it (its restore failed): the next use builds it again.
    pub fn discard(&self) {
        let trash = self.dir.with_extension(format!("bad-{}", std::process::id()));
        if std::fs::rename(&self.dir, &trash).is_ok() {
            let _ = std::fs::remove_dir_all(&trash);
        }
    }
}

/// How a VM started by `start` uses the disk it is given (see `Template::place_disk`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskUse {
    /// The VM runs on it and writes to it.
    Copy,
    /// It is only ever a backing file: the VM runs on an overlay of it.
    Link,
}

/// What `lookup` found.
pub enum Found {
    Usable(Template),
    /// None for this shape (or only one of another runtime, in another dir).
    Missing,
    /// There, but not intact: why (it is removed; the next use builds it again).
    Damaged(String),
}

pub fn lookup(rt: &Runtime, env: &BaseImage, shape: Shape) -> Result<Found> {
    let key = key(rt, env, shape)?;
    let dir = dir_for(env, &key);
    if !dir.exists() {
        return Ok(Found::Missing);
    }
    let Some(info) = read_meta(&dir) else { return Ok(damaged(&dir, "its description is unreadable")) };
    if info.key != key {
        return Ok(damaged(&dir, "its description names another runtime"));
    }
    let memory = std::fs::read(dir.join(MEMORY)).unwrap_or_default();
    if memory.len() as u64 != info.memory_bytes || hex::encode(Sha256::digest(&memory)) != info.memory_sha256 {
        return Ok(damaged(&dir, "its saved device state does not match its digest"));
    }
    if !std::fs::metadata(dir.join(RAM)).is_ok_and(|m| m.len() == (shape.mem_mib as u64) << 20) {
        return Ok(damaged(&dir, "its RAM file is missing or not the guest's size"));
    }
    if !dir.join(DISK).is_file() {
        return Ok(damaged(&dir, "its disk is missing"));
    }
    Ok(Found::Usable(Template { dir, info }))
}

fn damaged(dir: &Path, why: &str) -> Found {
    Template { dir: dir.to_path_buf(), info: empty_info() }.discard();
    Found::Damaged(why.to_string())
}

fn empty_info() -> TemplateInfo {
    TemplateInfo {
        key: String::new(),
        vcpus: 0,
        mem_mib: 0,
        nic: false,
        built_at: 0,
        memory_bytes: 0,
        memory_sha256: String::new(),
        disk_bytes: 0,
        ram_bytes: 0,
        boot_ms: 0,
        save_ms: 0,
        current: false,
    }
}

/// The templates of an installed environment (`env inspect`), each marked current or not.
pub fn list(rt: Option<&Runtime>, env: &BaseImage) -> Vec<TemplateInfo> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(root(env)).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if name.len() != 16 || !e.path().is_dir() {
            continue;
        }
        if let Some(mut info) = read_meta(&e.path()) {
            let shape = Shape { vcpus: info.vcpus, mem_mib: info.mem_mib, nic: info.nic };
            info.current = rt.is_some_and(|rt| key(rt, env, shape).is_ok_and(|k| k == info.key));
            out.push(info);
        }
    }
    out.sort_by_key(|i| std::cmp::Reverse(i.built_at));
    out
}

/// Build the template of `shape` now (waits for a build in progress elsewhere; returns the
/// existing template when there is one). Progress goes to `progress`.
pub fn build(rt: &Runtime, env: &BaseImage, shape: Shape, progress: &dyn Fn(&str)) -> Result<TemplateInfo> {
    let key = key(rt, env, shape)?;
    let dir = dir_for(env, &key);
    crate::paths::private_dir(&root(env))?;
    let _lock = crate::lockfile::lock(&dir.with_extension("lock"))?;
    if let Found::Usable(t) = lookup(rt, env, shape)? {
        return Ok(t.info);
    }
    progress(&format!(
        "template: booting {} ({} vCPU, {} MiB{}) to save it",
        env.name,
        shape.vcpus,
        shape.mem_mib,
        if shape.nic { ", NIC" } else { "" }
    ));
    let tmp = dir.with_extension("build");
    let _ = std::fs::remove_dir_all(&tmp);
    crate::paths::private_dir(&tmp)?;
    let result = build_in(rt, env, shape, &key, &tmp);
    match result {
        Ok(info) => {
            crate::paths::write_atomic(&tmp.join(META), &serde_json::to_vec_pretty(&info).unwrap())?;
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::rename(&tmp, &dir).ctx("installing the template")?;
            crate::paths::sync_dir(&root(env))?;
            remove_stale(rt, env);
            progress(&format!(
                "template: saved ({} MiB of {} MiB RAM in use, {} KiB of device state; boot {} ms, save {} ms)",
                info.ram_bytes >> 20,
                info.mem_mib,
                info.memory_bytes >> 10,
                info.boot_ms,
                info.save_ms
            ));
            Ok(info)
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            Err(e)
        }
    }
}

fn build_in(rt: &Runtime, env: &BaseImage, shape: Shape, key: &str, tmp: &Path) -> Result<TemplateInfo> {
    // Builders killed mid-way left their VM dirs (their QEMU died with their supervisor).
    for e in std::fs::read_dir(rt.paths.vms()).into_iter().flatten().flatten() {
        let old = e.path();
        let name = e.file_name().to_string_lossy().to_string();
        let stale = std::fs::metadata(&old)
            .and_then(|m| m.modified())
            .is_ok_and(|t| t.elapsed().is_ok_and(|a| a.as_secs() > 60));
        if name.starts_with("tpl-") && stale && crate::vm::procs::supervisors_of(&old).is_empty() {
            let _ = std::fs::remove_dir_all(&old);
        }
    }
    vm::create_overlay(&rt.qemu_img, &env.image(), &tmp.join(DISK))?;
    // A runtime dir named `tpl-...`: counted by the VM quota, swept like a throwaway VM's.
    let vdir = rt.paths.vms().join(format!("tpl-{}", vm::new_id()));
    crate::paths::private_dir(&vdir)?;
    let net = shape.nic.then(|| crate::net::NetSpec {
        options: crate::net::NetworkOptions { policy: crate::net::NetworkPolicy::Egress, ..Default::default() },
        denials_path: tmp.join("denials.json"),
        nameservers: crate::net::host_nameservers(),
    });
    let launched = vm::launch(
        rt,
        LaunchOptions {
            vcpus: shape.vcpus,
            mem_mib: shape.mem_mib,
            mode: qemu::VmMode::Run,
            disk: Some(Disk { path: tmp.join(DISK), format: "qcow2", cache: "writeback" }),
            ephemeral: false,
            cleanup: vec![],
            dir: Some(vdir.clone()),
            // Addressed after each restore (`NetConfig`): the template guest never has one.
            net,
            restore: None,
            ram_file: Some((tmp.join(RAM), true)),
            identity: None,
        },
    );
    let saved = launched.and_then(|mut v| {
        let boot_ms = v.boot.boot_ms;
        // One command first, so what every first command needs is paged in already.
        let req = pyro_proto::ExecRequest {
            command: pyro_proto::Command::Argv(vec!["true".into()]),
            cwd: Some("/".into()),
            env: vec![],
            timeout_ms: 30_000,
            max_output_bytes: 1024,
            progress_ms: 0,
        };
        v.client.exec(req)?;
        // The disk becomes the baseline of unseeded workspaces (a reset boots from it cold):
        // make it a clean file system (sync and a freeze checkpoint the journal) before the
        // save, rather than one that needs its journal replayed.
        v.client.call(&pyro_proto::Request::Freeze)?;
        v.client.call(&pyro_proto::Request::Thaw)?;
        let msg = pyro_proto::Request::Suspend { path: tmp.join(MEMORY).display().to_string() };
        match v.client.call(&msg)? {
            pyro_proto::Reply::Suspended { bytes, ms } => Ok((boot_ms, bytes, ms)),
            _ => Err(Error::guest("the supervisor sent a malformed reply to a save")),
        }
    });
    crate::vm::procs::kill_vm(&vdir);
    let _ = std::fs::remove_dir_all(&vdir);
    let (boot_ms, memory_bytes, save_ms) = saved?;
    // The RAM file is the template's memory: on disk before the template is said to exist.
    std::fs::File::open(tmp.join(RAM)).and_then(|f| f.sync_all()).ctx("writing the template's RAM file")?;
    let disk_bytes = std::fs::metadata(tmp.join(DISK)).map(|m| m.len()).unwrap_or(0);
    let memory_sha256 = hex::encode(Sha256::digest(std::fs::read(tmp.join(MEMORY)).ctx("reading the saved state")?));
    Ok(TemplateInfo {
        key: key.to_string(),
        vcpus: shape.vcpus,
        mem_mib: shape.mem_mib,
        nic: shape.nic,
        built_at: crate::clock::now_s(),
        memory_bytes,
        memory_sha256,
        disk_bytes,
        ram_bytes: crate::paths::disk_usage(&tmp.join(RAM)),
        boot_ms,
        save_ms,
        current: true,
    })
}

/// Remove this environment's templates that this runtime can never restore (another QEMU,
/// kernel or guest agent), and left-over build dirs.
fn remove_stale(rt: &Runtime, env: &BaseImage) {
    for t in list(Some(rt), env).into_iter().filter(|t| !t.current) {
        let _ = std::fs::remove_dir_all(dir_for(env, &t.key));
    }
}

/// Start building the template of `shape` in a detached `pyro __template` (unless one is
/// building already), so a later start finds it. Never fails the caller.
pub fn build_in_background(rt: &Runtime, env: &BaseImage, shape: Shape) {
    let Ok(key) = key(rt, env, shape) else { return };
    let dir = dir_for(env, &key);
    if crate::paths::private_dir(&root(env)).is_err() {
        return;
    }
    // Held: a build runs. (A race between two callers is settled by the builder's own lock.)
    if !matches!(crate::lockfile::try_lock(&dir.with_extension("lock")), Ok(Some(_))) {
        return;
    }
    let Ok(log) = std::fs::File::create(dir.with_extension("log")) else { return };
    let mut cmd = std::process::Command::new(&rt.supervisor_bin);
    // Its VM runs under the cache, not in the caller's runtime dir: the caller (a CLI call,
    // a test) is done long before the build, and owes nothing for it.
    cmd.env("PYRO_CACHE_DIR", &rt.paths.cache).env("PYRO_RUNTIME_DIR", rt.paths.cache.join("template-builds"));
    cmd.arg("__template")
        .arg(&env.name)
        .arg(shape.vcpus.to_string())
        .arg(shape.mem_mib.to_string())
        .arg(if shape.nic { "nic" } else { "no-nic" });
    crate::proc::spawn_detached(cmd, log);
}

/// Start a VM for `env` in `shape` on a new disk `overlay`: restored from the warm template
/// when there is one (its disk copied to `overlay`), else booted cold on a fresh overlay of
/// the base (and the template built in the background for next time). `launch` starts the
/// VM on `overlay`, restoring the memory file it is given; it must give the guest its
/// identity. A template that fails to restore is removed and the VM boots cold, with a note.
pub fn start(
    rt: &Runtime,
    env: &BaseImage,
    shape: Shape,
    overlay: &Path,
    how: DiskUse,
    launch: &mut dyn FnMut(Option<vm::Restore>) -> Result<vm::Vm>,
) -> Result<(vm::Vm, StartedFrom)> {
    let mut note = None;
    if rt.templates {
        match lookup(rt, env, shape)? {
            Found::Usable(t) => {
                crate::clock::trace("template: found");
                t.place_disk(overlay, how)?;
                crate::clock::trace("template: disk copied");
                match launch(Some(t.restore())) {
                    Ok(v) => return Ok((v, StartedFrom { from: "template".into(), note: None })),
                    // Only the guest failing is the template's fault (not a quota, a cancel).
                    Err(e) if e.code == crate::Code::GuestUnavailable => {
                        t.discard();
                        note = Some(format!("the warm template could not be restored ({}); booted cold", e.message));
                    }
                    Err(e) => return Err(e),
                }
                std::fs::remove_file(overlay).ctx("removing the template's disk copy")?;
            }
            Found::Missing => build_in_background(rt, env, shape),
            Found::Damaged(why) => {
                note = Some(format!("the warm template was damaged ({why}) and is rebuilt; booted cold"));
                build_in_background(rt, env, shape);
            }
        }
    }
    vm::create_overlay(&rt.qemu_img, &env.image(), overlay)?;
    let v = launch(None)?;
    Ok((v, StartedFrom::cold(note)))
}

//! Everything a VM needs on the host, resolved once per process: QEMU, the guest kernel,
//! the initramfs, the accelerator verdict, and the `pyro` binary that runs supervisors.
//!
//! Each piece is cached on disk (see `paths`), so after the first run preparing a runtime
//! costs a few file reads, not downloads or boots.

use crate::error::{Error, Result};
use crate::kernel::{self, Kernel};
use crate::paths::Paths;
use crate::vm::{accel, initramfs, qemu};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

/// Everything a VM needs on the host, resolved once: the binaries, the guest kernel and initramfs,
/// and the accelerator.
#[derive(Debug, Clone)]
pub struct Runtime {
    /// The directories the runtime was prepared in.
    pub paths: Paths,
    /// The `qemu-system-x86_64` binary.
    pub qemu: PathBuf,
    /// The `qemu-img` binary, for copy-on-write overlays.
    pub qemu_img: PathBuf,
    /// The verified guest kernel VMs boot.
    pub kernel: Kernel,
    /// The initramfs VMs boot: the guest agent as `/init` and the kernel's modules.
    pub initramfs: PathBuf,
    /// Which accelerator VMs use, and why.
    pub accel: accel::Verdict,
    /// The `pyro` binary that runs as each VM's supervisor.
    pub supervisor_bin: PathBuf,
    /// Start VMs from warm templates (see `template`); `PYRO_TEMPLATES=off` or the SDK's
    /// `Pyro::with_templates(false)` turns it off.
    pub templates: bool,
    /// Keep a warm spare VM ready for the next create (see `workspace::spare`); only with
    /// templates. `PYRO_SPARES=off` or `Pyro::with_spares(false)` turns it off.
    pub spares: bool,
}

impl Runtime {
    /// Find or make each piece (the on-disk caches first; the kernel is fetched, the initramfs
    /// built and the accelerator probed only when not cached); `(templates, spares)` turn warm
    /// templates and spares on (spares only with templates).
    pub fn prepare(paths: &Paths, (templates, spares): (bool, bool), progress: &dyn Fn(&str)) -> Result<Runtime> {
        let qemu = qemu::find_qemu()?;
        let qemu_img = qemu::find_qemu_img()?;
        let supervisor_bin = pyro_binary()?;
        let guest_bin = guest_binary(&supervisor_bin)?;
        // Hot path: a cached kernel whose files have the recorded sizes is used as is (its
        // hashes were checked when it was installed; `pyro doctor` re-checks them). Hashing
        // 14 MiB on every CLI call would cost more than the exec it serves.
        let kernel = match kernel::cached_kernel(&paths.kernels()) {
            Some(k) => k,
            None => kernel::ensure_kernel(&paths.kernels(), &kernel::mirror_from_env(), progress)?,
        };
        let initramfs = initramfs::ensure(&paths.initramfs(), &guest_bin, &kernel)?;
        let accel = accel::choose(&paths.cache, &qemu, &kernel.vmlinuz, &initramfs, &kernel.release)?;
        Ok(Runtime {
            paths: paths.clone(),
            qemu,
            qemu_img,
            kernel,
            initramfs,
            accel,
            supervisor_bin,
            templates,
            spares: spares && templates,
        })
    }
}

/// Progress sink for long steps (kernel download, environment build, boot).
pub type Progress = Box<dyn Fn(&str) + Send + Sync>;

/// One user's pyro on this host: its directories, the runtime resolved on first use, and the
/// caller's settings (progress sink, cancellation, warm templates and spares). The SDK's
/// `Pyro` is one; workspaces, runs and builds below the SDK take it, so nothing under the
/// SDK needs the SDK itself.
pub struct Host {
    pub(crate) paths: Paths,
    runtime: OnceLock<Runtime>,
    pub(crate) progress: Progress,
    pub(crate) cancel: crate::Cancel,
    /// Progress lines during guest commands, this often (0: none).
    pub(crate) exec_progress_ms: u64,
    /// Warm templates on (default, unless `PYRO_TEMPLATES=off`).
    pub(crate) templates: bool,
    /// Warm spares on (default, unless `PYRO_SPARES=off`; only with templates).
    pub(crate) spares: bool,
    /// Diff tracking on (default, unless `PYRO_DIFF_TRACKING=off`): the guest reuses the
    /// hashes of files that did not change; off, every diff and summary hashes everything.
    pub(crate) diff_tracking: bool,
}

impl Host {
    /// A host for `paths`, with the defaults the environment sets (`PYRO_TEMPLATES`,
    /// `PYRO_SPARES`), no progress sink and a fresh cancellation token.
    pub fn new(paths: Paths) -> Host {
        Host {
            paths,
            runtime: OnceLock::new(),
            progress: Box::new(|_| {}),
            cancel: crate::Cancel::new(),
            exec_progress_ms: 0,
            templates: templates_enabled_by_env(),
            spares: spares_enabled_by_env(),
            diff_tracking: diff_tracking_enabled_by_env(),
        }
    }

    /// A host for one call: these paths and settings, the runtime this one has prepared (if
    /// it has: preparing checks the kernel and the initramfs, about 15 ms a call), a fresh
    /// progress sink, and `cancel`.
    pub(crate) fn for_call(&self, cancel: crate::Cancel) -> Host {
        let runtime = OnceLock::new();
        if let Some(rt) = self.runtime.get() {
            let _ = runtime.set(rt.clone());
        }
        Host {
            paths: self.paths.clone(),
            runtime,
            progress: Box::new(|_| {}),
            cancel,
            exec_progress_ms: self.exec_progress_ms,
            templates: self.templates,
            spares: self.spares,
            diff_tracking: self.diff_tracking,
        }
    }

    /// Keep `other`'s prepared runtime if this host has none yet.
    pub(crate) fn adopt_runtime(&self, other: &Host) {
        if self.runtime.get().is_none() {
            if let Some(rt) = other.runtime.get() {
                let _ = self.runtime.set(rt.clone());
            }
        }
    }

    /// A host for the paths the environment names (XDG dirs, `PYRO_*_DIR` overrides).
    pub fn from_env() -> Result<Host> {
        Ok(Host::new(Paths::from_env()?))
    }

    /// This user's cache, data and runtime directories.
    pub fn paths(&self) -> &Paths {
        &self.paths
    }

    /// QEMU, kernel, initramfs and accelerator, resolved once per host handle.
    pub fn runtime(&self) -> Result<&Runtime> {
        if let Some(rt) = self.runtime.get() {
            return Ok(rt);
        }
        let rt = Runtime::prepare(&self.paths, (self.templates, self.spares), &*self.progress)?;
        Ok(self.runtime.get_or_init(|| rt))
    }

    /// The cancellation token operations of this handle watch.
    pub fn cancel_token(&self) -> &crate::Cancel {
        &self.cancel
    }

    /// Progress sink, for long steps.
    pub fn progress(&self) -> &(dyn Fn(&str) + Send + Sync) {
        &*self.progress
    }

    /// How often a running guest command reports progress, in ms (0: never).
    pub fn exec_progress_ms(&self) -> u64 {
        self.exec_progress_ms
    }
}

/// Whether templates are on for this process (`PYRO_TEMPLATES=off|0|false` turns them off).
pub fn templates_enabled_by_env() -> bool {
    on_unless_off("PYRO_TEMPLATES")
}

/// A switch that is on unless the variable says `off`, `0`, `false` or `no`.
fn on_unless_off(var: &str) -> bool {
    !std::env::var(var).is_ok_and(|v| matches!(v.as_str(), "off" | "0" | "false" | "no"))
}

/// Whether diff tracking is on (`PYRO_DIFF_TRACKING=off|0|false|no` turns it off).
pub fn diff_tracking_enabled_by_env() -> bool {
    on_unless_off("PYRO_DIFF_TRACKING")
}

/// Whether spares are on (`PYRO_SPARES=off|0|false|no` turns them off).
pub fn spares_enabled_by_env() -> bool {
    on_unless_off("PYRO_SPARES")
}

/// Set once, at startup, by the `pyro` CLI: this process is pyro itself, whatever its file
/// is called or wherever it is installed.
static SELF_IS_PYRO: AtomicBool = AtomicBool::new(false);

/// Tell the library that the running executable is the `pyro` CLI, so supervisors are started
/// from it (see [`pyro_binary`]). Only the CLI's `main` calls this; SDK users must not, since
/// their executable has no `__supervise` subcommand.
pub fn mark_self_is_pyro() {
    SELF_IS_PYRO.store(true, Ordering::Relaxed);
}

/// The `pyro` binary an embedding process names (see [`set_pyro_binary`]).
static PYRO_BINARY: OnceLock<PathBuf> = OnceLock::new();

/// Name the `pyro` binary that supervises this process's VMs, for an embedding whose own
/// executable says nothing about where pyro is: the Python module runs inside `python3`, and
/// its wheel installs `pyro` into the environment's scripts directory. The first call wins.
pub fn set_pyro_binary(path: PathBuf) {
    let _ = PYRO_BINARY.set(path);
}

/// The `pyro` binary that runs VM supervisors (as `pyro __supervise DIR`), in this order:
///
/// 1. `$PYRO_BIN`, when set and not empty (tests and unusual installs), then the binary an
///    embedding named with [`set_pyro_binary`];
/// 2. the running executable (`/proc/self/exe`), when this process is the pyro CLI (it called
///    [`mark_self_is_pyro`] at startup) or its file is named `pyro`: a CLI installed or copied
///    under another name still supervises its own VMs, and never a different `pyro` found on
///    `PATH` (which could be another version, speaking another protocol);
/// 3. for SDK users (any other executable): a `pyro` beside this executable or one directory
///    up (cargo's test binaries live in `target/*/deps`), then `pyro` on `PATH`.
pub fn pyro_binary() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("PYRO_BIN").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    if let Some(p) = PYRO_BINARY.get() {
        return Ok(p.clone());
    }
    let exe = std::env::current_exe();
    if SELF_IS_PYRO.load(Ordering::Relaxed) {
        return exe.map_err(|e| {
            Error::io("finding the running pyro executable (/proc/self/exe)", e).hint("set PYRO_BIN to the pyro binary")
        });
    }
    if let Ok(exe) = exe {
        if exe.file_name().is_some_and(|n| n == "pyro") {
            return Ok(exe);
        }
        for dir in exe.parent().into_iter().chain(exe.parent().and_then(Path::parent)) {
            let cand = dir.join("pyro");
            if cand.is_file() {
                return Ok(cand);
            }
        }
    }
    qemu::which("pyro").ok_or_else(|| {
        Error::internal("cannot find the pyro binary that runs VM supervisors").hint("put pyro on PATH or set PYRO_BIN")
    })
}

/// The static guest agent: `$PYRO_GUEST_BIN`, else `pyro-guest` beside the pyro binary, else
/// `../lib/pyro-mcp/pyro-guest` relative to it (an install prefix).
pub fn guest_binary(pyro: &Path) -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("PYRO_GUEST_BIN").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    let dir = pyro.parent().unwrap_or(Path::new("."));
    for cand in [dir.join("pyro-guest"), dir.join("../lib/pyro-mcp/pyro-guest")] {
        if cand.is_file() {
            return Ok(cand);
        }
    }
    Err(Error::guest("cannot find the guest agent (pyro-guest)")
        .hint("build it with `make build` (it is installed beside pyro), or set PYRO_GUEST_BIN"))
}

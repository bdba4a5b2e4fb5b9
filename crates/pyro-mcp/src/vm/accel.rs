//! Choosing the accelerator: KVM only when a real boot probe succeeds on this host, else TCG.
//!
//! `/dev/kvm` existing is not enough: nested hypervisors (such as PVM) accept KVM ioctls and
//! then hang stock kernels after the BIOS. So the probe boots our kernel and initramfs in
//! `probe` mode under KVM and waits for the marker on the serial console. The verdict is cached
//! per host (keyed by host kernel, QEMU binary and guest kernel) and reported everywhere.

use super::qemu::{self, Accel, MachineConfig};
use crate::error::Result;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The accelerator chosen for this host, why, and what it was decided from; cached in
/// `<cache>/accel.json` until its key or this user's access to `/dev/kvm` changes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Verdict {
    /// The accelerator VMs run under: KVM or TCG.
    pub accel: Accel,
    /// Why KVM was chosen or rejected, in one line.
    pub reason: String,
    /// `/dev/kvm` exists.
    pub kvm_exists: bool,
    /// This user can read `/dev/kvm`.
    pub kvm_readable: bool,
    /// This user can write `/dev/kvm`.
    pub kvm_writable: bool,
    /// Result of the boot probe, if one ran.
    pub kvm_probe: Option<bool>,
    /// The host TSC frequency in kHz, passed to TCG guests (microvm has no HPET or PM timer to
    /// calibrate the TSC against).
    pub tsc_khz: Option<u64>,
    /// What the verdict depends on (host, host kernel, QEMU binary, guest kernel): another key
    /// means probe again.
    pub key: String,
}

const PROBE_TIMEOUT: Duration = Duration::from_secs(8);

fn access(path: &str, mode: libc::c_int) -> bool {
    let c = std::ffi::CString::new(path).unwrap();
    // SAFETY: `c` is a NUL-terminated CString that lives across the call; access only reads it.
    unsafe { libc::access(c.as_ptr(), mode) == 0 }
}

fn host_key(qemu: &Path, kernel_release: &str) -> String {
    let uname = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let qm = std::fs::metadata(qemu)
        .map(|m| {
            format!(
                "{}:{}",
                m.len(),
                m.modified()
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map(|d| d.as_secs())
                    .unwrap_or(0)
            )
        })
        .unwrap_or_default();
    format!("{}|{}|{}|{}|{}", host.trim(), uname.trim(), qemu.display(), qm, kernel_release)
}

/// The cached verdict if it matches this host, else probe and cache. `PYRO_ACCEL=kvm|tcg`
/// forces a choice (no probe).
pub fn choose(cache: &Path, qemu: &Path, kernel: &Path, initrd: &Path, kernel_release: &str) -> Result<Verdict> {
    let key = host_key(qemu, kernel_release);
    let file = cache.join("accel.json");
    let (exists, readable, writable) =
        (Path::new("/dev/kvm").exists(), access("/dev/kvm", libc::R_OK), access("/dev/kvm", libc::W_OK));
    if let Ok(forced) = std::env::var("PYRO_ACCEL") {
        let accel = if forced == "kvm" { Accel::Kvm } else { Accel::Tcg };
        return Ok(Verdict {
            accel,
            reason: format!("forced by PYRO_ACCEL={forced}"),
            kvm_exists: exists,
            kvm_readable: readable,
            kvm_writable: writable,
            kvm_probe: None,
            tsc_khz: qemu::host_tsc_khz(),
            key,
        });
    }
    if let Some(v) = std::fs::read(&file).ok().and_then(|b| serde_json::from_slice::<Verdict>(&b).ok()) {
        // Group membership can change between runs; the cached probe stays valid only if
        // access is what it was.
        if v.key == key && v.kvm_readable == readable && v.kvm_writable == writable {
            return Ok(v);
        }
    }
    let tsc_khz = qemu::host_tsc_khz();
    let (accel, probe, reason) = if !exists {
        (Accel::Tcg, None, "/dev/kvm does not exist (no hardware virtualization exposed to this host)".to_string())
    } else if !(readable && writable) {
        (
            Accel::Tcg,
            None,
            "/dev/kvm is not readable and writable by this user (add the user to the kvm group)".to_string(),
        )
    } else {
        match probe_kvm(cache, qemu, kernel, initrd) {
            Ok(()) => (Accel::Kvm, Some(true), "KVM boot probe succeeded".to_string()),
            Err(why) => (Accel::Tcg, Some(false), format!("KVM boot probe failed: {why}")),
        }
    };
    let v = Verdict {
        accel,
        reason,
        kvm_exists: exists,
        kvm_readable: readable,
        kvm_writable: writable,
        kvm_probe: probe,
        tsc_khz,
        key,
    };
    crate::paths::private_dir(cache)?;
    crate::paths::write_atomic(&file, &serde_json::to_vec_pretty(&v).unwrap())?;
    Ok(v)
}

/// Boot the probe under KVM; Ok if the guest init printed its marker in time.
fn probe_kvm(cache: &Path, qemu_bin: &Path, kernel: &Path, initrd: &Path) -> std::result::Result<(), String> {
    let dir: PathBuf = cache.join(format!("probe-{}", std::process::id()));
    crate::paths::private_dir(&dir).map_err(|e| e.message)?;
    let cfg = MachineConfig {
        accel: Accel::Kvm,
        vcpus: 1,
        mem_mib: 256,
        kernel: kernel.into(),
        initrd: initrd.into(),
        mode: super::qemu::VmMode::Probe,
        tsc_khz: None,
        disk: None,
        nic: false,
        dir: dir.clone(),
    };
    let result = super::boot_to_init(qemu_bin, &cfg, PROBE_TIMEOUT)
        .map(|_| ())
        .map_err(|e| format!("{e} under KVM (nested or PVM hypervisors hang stock kernels)"));
    let _ = std::fs::remove_dir_all(&dir);
    result
}

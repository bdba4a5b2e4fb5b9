//! `pyro doctor`: can this host, as this user, run pyro's guests, and if not, what to do.
//!
//! Every check is real: the accelerator verdict comes from a boot probe, `vm_boot` from
//! booting our kernel and initramfs, `guest_exec` from running `true` in an installed
//! environment. Each problem is one finding with the exact command that fixes it.

use crate::paths::Paths;
use crate::runtime::Runtime;
use crate::vm::qemu;
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub problem: String,
    pub fix: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct DoctorReport {
    pub ok: bool,
    pub platform: String,
    pub host_kernel: String,
    pub user: String,
    pub accelerator: Option<String>,
    pub accelerator_reason: Option<String>,
    pub kvm: serde_json::Value,
    pub qemu_version: Option<String>,
    pub kernel: Option<serde_json::Value>,
    pub environments: Vec<serde_json::Value>,
    pub capabilities: serde_json::Value,
    pub checks: Vec<Check>,
    pub findings: Vec<Finding>,
    pub paths: serde_json::Value,
}

fn uid_name() -> (u32, String) {
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let name = passwd
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() > 2 && f[2] == uid.to_string()).then(|| f[0].to_string())
        })
        .unwrap_or_else(|| uid.to_string());
    (uid, name)
}

fn has_subids(user: &str, file: &str) -> bool {
    std::fs::read_to_string(file).unwrap_or_default().lines().any(|l| l.split(':').next() == Some(user))
}

pub fn doctor(paths: &Paths, progress: &dyn Fn(&str)) -> DoctorReport {
    let (uid, user) = uid_name();
    let mut checks = Vec::new();
    let mut findings = Vec::new();
    let mut check = |name: &str, ok: bool, detail: String, fix: Option<String>| {
        if !ok {
            if let Some(fix) = fix {
                findings.push(Finding { problem: format!("{name}: {detail}"), fix });
            }
        }
        checks.push(Check { name: name.into(), ok, detail });
    };
    let qemu_bin = qemu::find_qemu();
    let qemu_version = qemu_bin.as_ref().ok().and_then(|q| qemu::version(q).ok());
    check(
        "qemu",
        qemu_bin.is_ok(),
        qemu_version.clone().unwrap_or_else(|| "qemu-system-x86_64 not found".into()),
        Some("sudo apt-get install qemu-system-x86 qemu-utils".into()),
    );
    check(
        "qemu-img",
        qemu::find_qemu_img().is_ok(),
        "needed for copy-on-write disks".into(),
        Some("sudo apt-get install qemu-utils".into()),
    );
    for (tool, pkg, why) in [
        ("mmdebstrap", "mmdebstrap", "builds environments from the Debian archive"),
        ("gpgv", "gpgv", "verifies the Debian archive's signatures"),
        ("mke2fs", "e2fsprogs", "makes environment images"),
        ("bwrap", "bubblewrap", "sandbox for --allow-host-compat"),
    ] {
        let found = qemu::which(tool).is_some();
        check(
            tool,
            found,
            if found { why.to_string() } else { format!("not found ({why})") },
            Some(format!("sudo apt-get install {pkg}")),
        );
    }
    if uid != 0 {
        let sub = has_subids(&user, "/etc/subuid") && has_subids(&user, "/etc/subgid");
        check(
            "subordinate ids",
            sub,
            if sub {
                format!("{user} has /etc/subuid and /etc/subgid ranges (rootless environment builds)")
            } else {
                format!("{user} has no /etc/subuid or /etc/subgid range; environment builds need one")
            },
            Some(format!("sudo usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {user}")),
        );
        let newuidmap = qemu::which("newuidmap").is_some();
        check(
            "newuidmap",
            newuidmap,
            "maps subordinate ids for rootless builds".into(),
            Some("sudo apt-get install uidmap".into()),
        );
    }
    let rt_dir_ok = crate::paths::private_dir(&paths.runtime).is_ok();
    check(
        "runtime dir",
        rt_dir_ok,
        format!("{} {}", paths.runtime.display(), if rt_dir_ok { "is usable (0700)" } else { "cannot be created" }),
        Some("set PYRO_RUNTIME_DIR to a writable directory, or fix XDG_RUNTIME_DIR".into()),
    );
    let kvm_exists = std::path::Path::new("/dev/kvm").exists();
    let in_kvm_group = kvm_exists && {
        let c = std::ffi::CString::new("/dev/kvm").unwrap();
        // SAFETY: `c` is a NUL-terminated CString that lives across the call; access only reads it.
        unsafe { libc::access(c.as_ptr(), libc::R_OK | libc::W_OK) == 0 }
    };
    if kvm_exists {
        check(
            "kvm access",
            in_kvm_group,
            if in_kvm_group {
                "/dev/kvm is readable and writable".into()
            } else {
                "/dev/kvm exists but this user cannot open it read-write; VMs fall back to slow TCG".into()
            },
            Some(format!("sudo usermod -aG kvm {user} (then log in again)")),
        );
    }

    progress("doctor: preparing the runtime (kernel, initramfs, accelerator probe)");
    // Unlike the hot path, doctor verifies the cached kernel's hashes (and re-fetches if damaged).
    if let Err(e) = crate::kernel::ensure_kernel(&paths.kernels(), &crate::kernel::mirror_from_env(), progress) {
        check("kernel", false, e.message.clone(), e.hint.clone());
    }
    let rt = Runtime::prepare(
        paths,
        (crate::runtime::templates_enabled_by_env(), crate::runtime::spares_enabled_by_env()),
        progress,
    );
    let (mut accelerator, mut reason, mut kvm) = (None, None, serde_json::json!({"exists": kvm_exists}));
    let kernel;
    let mut vm_boot = false;
    let mut guest_exec = false;
    let mut guest_network = (false, "no guest could run a command here".to_string());
    let mut envs = Vec::new();
    match &rt {
        Ok(rt) => {
            accelerator = Some(rt.accel.accel.as_str().to_string());
            reason = Some(rt.accel.reason.clone());
            kvm = serde_json::json!({
                "exists": rt.accel.kvm_exists, "readable": rt.accel.kvm_readable, "writable": rt.accel.kvm_writable,
                "boot_probe": rt.accel.kvm_probe, "usable": rt.accel.accel == qemu::Accel::Kvm, "reason": rt.accel.reason,
            });
            kernel = Some(
                serde_json::json!({"cached": true, "package": rt.kernel.package, "version": rt.kernel.version, "release": rt.kernel.release}),
            );
            progress("doctor: booting a test VM");
            let boot = crate::vm::probe_boot(rt);
            check(
                "vm boot",
                boot.is_ok(),
                boot.clone()
                    .map(|ms| format!("kernel reached the guest init in {ms} ms ({})", rt.accel.accel.as_str()))
                    .unwrap_or_else(|e| e.message),
                Some("see the serial log quoted above; run `pyro doctor --json` for details".into()),
            );
            vm_boot = boot.is_ok();
            check(
                "warm templates",
                true,
                if rt.templates {
                    "on: VMs start from a saved booted guest when one fits (built by `pyro env pull` and on first use)"
                        .into()
                } else {
                    "off (PYRO_TEMPLATES=off): every VM boots its kernel".into()
                },
                None,
            );
            check(
                "warm spares",
                true,
                if rt.spares {
                    format!(
                        "on: a create leaves one paused VM for the next create of its kind ({} waiting; PYRO_SPARES=off turns them off)",
                        crate::vm::spare::count(paths)
                    )
                } else {
                    "off: every create restores or boots its own VM".into()
                },
                None,
            );
            for e in crate::env::CATALOG {
                let inst = crate::env::installed(paths, e.name);
                let templates: Vec<_> = inst
                    .as_ref()
                    .map(|i| crate::vm::template::list(Some(rt), &i.base()))
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|t| t.current)
                    .map(|t| serde_json::json!({"vcpus": t.vcpus, "mem_mib": t.mem_mib, "nic": t.nic, "memory_bytes": t.memory_bytes}))
                    .collect();
                envs.push(serde_json::json!({"name": e.name, "installed": inst.is_some(), "version": inst.as_ref().map(|i| i.version.clone()), "digest": inst.as_ref().map(|i| i.digest.clone()), "warm_templates": templates}));
            }
            if vm_boot {
                if let Some(env) = crate::env::CATALOG.iter().find(|e| crate::env::installed(paths, e.name).is_some()) {
                    progress(&format!("doctor: running `true` in {}", env.name));
                    let r = crate::session::VmSession::start(rt, env.name, 1, 512, progress)
                        .and_then(|mut s| s.exec(pyro_proto::Command::Argv(vec!["true".into()]), 30, 1024));
                    guest_exec = r.as_ref().map(|o| o.result.exit_code == 0).unwrap_or(false);
                    check(
                        "guest exec",
                        guest_exec,
                        match &r {
                            Ok(_) => format!("ran `true` in {}", env.name),
                            Err(e) => e.message.clone(),
                        },
                        Some("see `pyro run debian:12 -- true` for the full error".into()),
                    );
                    if guest_exec {
                        progress(&format!("doctor: booting {} with a NIC (network egress)", env.name));
                        guest_network = network_check(rt, env.name, progress);
                        check(
                            "guest network",
                            guest_network.0,
                            guest_network.1.clone(),
                            Some("see `pyro run --network-policy egress debian:12 -- ls /sys/class/net`".into()),
                        );
                    }
                } else {
                    check(
                        "guest exec",
                        false,
                        "no environment installed yet".into(),
                        Some("pyro env pull debian:12".into()),
                    );
                }
            }
        }
        Err(e) => {
            let mut fix = e.hint.clone().unwrap_or_default();
            if fix.is_empty() {
                fix = "make setup".into();
            }
            check("runtime", false, e.message.clone(), Some(fix));
            kernel = crate::kernel::cached_kernel(&paths.kernels())
                .map(|k| serde_json::json!({"cached": true, "release": k.release, "version": k.version}));
        }
    }
    DoctorReport {
        ok: vm_boot,
        platform: format!("{}-{}", std::env::consts::OS, std::env::consts::ARCH),
        host_kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string(),
        user: format!("{user} (uid {uid})"),
        accelerator,
        accelerator_reason: reason,
        kvm,
        qemu_version,
        kernel,
        environments: envs,
        capabilities: serde_json::json!({
            "vm_boot": vm_boot,
            "guest_exec": guest_exec,
            "guest_network": guest_network.0,
            "guest_network_reason": guest_network.1,
        }),
        checks,
        findings,
        paths: serde_json::json!({"cache": paths.cache, "data": paths.data, "runtime": paths.runtime}),
    }
}

/// Boot a guest with a NIC (policy `egress`, nothing leaves it) and check it configured an
/// interface: (works, what happened).
fn network_check(rt: &crate::runtime::Runtime, env: &str, progress: &dyn Fn(&str)) -> (bool, String) {
    let egress = crate::net::NetworkOptions { policy: crate::net::NetworkPolicy::Egress, ..Default::default() };
    let ls = pyro_proto::Command::Shell("ls /sys/class/net".into());
    match crate::session::VmSession::start_with(rt, env, 1, 512, &egress, progress)
        .and_then(|mut s| s.exec(ls, 30, 4096))
    {
        Ok(o) => {
            let names = String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .filter(|n| *n != "lo")
                .collect::<Vec<_>>()
                .join(", ");
            if o.result.exit_code == 0 && !names.is_empty() {
                (
                    true,
                    format!("a guest with a NIC booted and configured {names} (10.0.2.15 behind the user-mode stack)"),
                )
            } else {
                (false, "the guest booted but has no network interface".into())
            }
        }
        Err(e) => (false, e.message),
    }
}

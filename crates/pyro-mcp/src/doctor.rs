//! `pyro doctor`: can this host, as this user, run pyro's guests, and if not, what to do.
//!
//! Every check is real: the accelerator verdict comes from a boot probe, `vm_boot` from
//! booting our kernel and initramfs, `guest_exec` from running `true` in an installed
//! environment. Each problem is one finding with the exact command that fixes it.

use crate::paths::Paths;
use crate::runtime::Runtime;
use crate::vm::qemu;
use schemars::JsonSchema;
use serde::Serialize;
use std::path::PathBuf;

/// A problem doctor found, with the command that fixes it.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Finding {
    /// The failed check and what is wrong, e.g. `qemu: qemu-system-x86_64 not found`.
    pub problem: String,
    /// The exact command (or step) that fixes it.
    pub fix: String,
}

/// One check doctor ran, passed or not.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Check {
    /// What was checked: a tool (`qemu`, `mke2fs`), `kvm access`, `vm boot`, `guest exec`, ...
    pub name: String,
    /// The check passed.
    pub ok: bool,
    /// What was found, in one line (a version, a path, the error).
    pub detail: String,
}

/// `pyro doctor`: whether this host, as this user, can run pyro's guests, every check behind
/// that answer, and a fix for each problem.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct DoctorReport {
    /// A test VM booted: pyro can run guests here (the CLI exits 0 only then).
    pub ok: bool,
    /// The host's `os-arch`, e.g. `linux-x86_64`.
    pub platform: String,
    /// The host kernel's release (`/proc/sys/kernel/osrelease`).
    pub host_kernel: String,
    /// The user doctor ran as, `name (uid N)`: group membership and subordinate ids are theirs.
    pub user: String,
    /// The accelerator VMs use (`kvm` or `tcg`); None when the runtime could not be prepared.
    pub accelerator: Option<String>,
    /// Why that accelerator was chosen (the KVM boot probe's outcome, or a forced choice).
    pub accelerator_reason: Option<String>,
    /// What doctor learned of `/dev/kvm`.
    pub kvm: DoctorKvm,
    /// `qemu-system-x86_64 --version`'s first line; None when QEMU was not found.
    pub qemu_version: Option<String>,
    /// The guest kernel; None when none is cached.
    pub kernel: Option<DoctorKernel>,
    /// Each catalog environment: installed or not, and its warm templates. Empty when the
    /// runtime could not be prepared.
    pub environments: Vec<DoctorEnvironment>,
    /// What a guest could do here, as proved by booting one.
    pub capabilities: DoctorCapabilities,
    /// Every check, in the order run.
    pub checks: Vec<Check>,
    /// A fix for each failed check that has one.
    pub findings: Vec<Finding>,
    /// The directories pyro uses, as resolved from the environment.
    pub paths: DoctorPaths,
}

/// `/dev/kvm`: whether it exists, and once the runtime is prepared, the accelerator verdict.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct DoctorKvm {
    /// `/dev/kvm` exists.
    pub exists: bool,
    /// The verdict's fields, absent when the runtime could not be prepared (no verdict).
    #[serde(flatten)]
    pub verdict: Option<KvmVerdict>,
}

/// Whether VMs use KVM, and why (see `vm::accel`: KVM needs a successful boot probe).
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct KvmVerdict {
    /// This user can read `/dev/kvm`.
    pub readable: bool,
    /// This user can write `/dev/kvm`.
    pub writable: bool,
    /// The KVM boot probe's outcome; None when no probe ran (no access, or a forced choice).
    pub boot_probe: Option<bool>,
    /// VMs run under KVM.
    pub usable: bool,
    /// Why KVM was chosen or rejected, in one line.
    pub reason: String,
}

/// The guest kernel. Two shapes, as the report has always had them: the kernel the prepared
/// runtime boots, or, when the runtime could not be prepared, the newest one in the cache.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum DoctorKernel {
    /// The runtime was prepared: its kernel, verified against the Debian archive.
    Ready {
        /// Always true: the kernel is in pyro's cache.
        cached: bool,
        /// The Debian package, e.g. `linux-image-6.1.0-41-cloud-amd64`.
        package: String,
        /// The Debian package version.
        version: String,
        /// The kernel's `uname -r`, e.g. `6.1.0-41-cloud-amd64`.
        release: String,
    },
    /// The runtime could not be prepared: the newest kernel found in the cache.
    Cached {
        /// Always true: the kernel is in pyro's cache.
        cached: bool,
        /// The kernel's `uname -r`.
        release: String,
        /// The Debian package version.
        version: String,
    },
}

impl DoctorKernel {
    /// The kernel's `uname -r`.
    pub fn release(&self) -> &str {
        match self {
            DoctorKernel::Ready { release, .. } | DoctorKernel::Cached { release, .. } => release,
        }
    }

    /// The Debian package version.
    pub fn version(&self) -> &str {
        match self {
            DoctorKernel::Ready { version, .. } | DoctorKernel::Cached { version, .. } => version,
        }
    }
}

/// One environment of the catalog as installed here.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct DoctorEnvironment {
    /// The catalog name, e.g. `debian:12`.
    pub name: String,
    /// An install is on disk (`pyro env pull` made it).
    pub installed: bool,
    /// The installed version; None when not installed.
    pub version: Option<String>,
    /// The install's identity (sha256 of its rootfs archive); None when not installed.
    pub digest: Option<String>,
    /// The saved booted guests VMs of this environment start from, current ones only.
    pub warm_templates: Vec<DoctorTemplate>,
}

/// A warm template: a booted guest saved for one machine shape.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct DoctorTemplate {
    /// vCPUs of the VMs it serves.
    pub vcpus: u32,
    /// Memory of the VMs it serves, in MiB.
    pub mem_mib: u32,
    /// It was saved with a network card (for VMs with a network policy).
    pub nic: bool,
    /// Bytes of its saved memory and device state.
    pub memory_bytes: u64,
}

/// What a guest could do on this host, each proved by doing it.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct DoctorCapabilities {
    /// Our kernel and initramfs booted to the guest agent.
    pub vm_boot: bool,
    /// `true` ran in an installed environment.
    pub guest_exec: bool,
    /// A guest with a network card configured its interface.
    pub guest_network: bool,
    /// What the network check saw, or why it did not run.
    pub guest_network_reason: String,
}

/// The directories pyro uses (see [`Paths`]).
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct DoctorPaths {
    /// Kernels, environments and templates (`PYRO_CACHE_DIR`).
    pub cache: PathBuf,
    /// Workspaces and their database (`PYRO_DATA_DIR`).
    pub data: PathBuf,
    /// Sockets and per-VM directories of running VMs (`PYRO_RUNTIME_DIR`).
    pub runtime: PathBuf,
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
    let (mut accelerator, mut reason, mut kvm) = (None, None, DoctorKvm { exists: kvm_exists, verdict: None });
    let kernel;
    let mut vm_boot = false;
    let mut guest_exec = false;
    let mut guest_network = (false, "no guest could run a command here".to_string());
    let mut envs = Vec::new();
    match &rt {
        Ok(rt) => {
            accelerator = Some(rt.accel.accel.as_str().to_string());
            reason = Some(rt.accel.reason.clone());
            kvm = DoctorKvm {
                exists: rt.accel.kvm_exists,
                verdict: Some(KvmVerdict {
                    readable: rt.accel.kvm_readable,
                    writable: rt.accel.kvm_writable,
                    boot_probe: rt.accel.kvm_probe,
                    usable: rt.accel.accel == qemu::Accel::Kvm,
                    reason: rt.accel.reason.clone(),
                }),
            };
            kernel = Some(DoctorKernel::Ready {
                cached: true,
                package: rt.kernel.package.clone(),
                version: rt.kernel.version.clone(),
                release: rt.kernel.release.clone(),
            });
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
                    .map(|t| DoctorTemplate {
                        vcpus: t.vcpus,
                        mem_mib: t.mem_mib,
                        nic: t.nic,
                        memory_bytes: t.memory_bytes,
                    })
                    .collect();
                envs.push(DoctorEnvironment {
                    name: e.name.to_string(),
                    installed: inst.is_some(),
                    version: inst.as_ref().map(|i| i.version.clone()),
                    digest: inst.as_ref().map(|i| i.digest.clone()),
                    warm_templates: templates,
                });
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
            kernel = crate::kernel::cached_kernel(&paths.kernels()).map(|k| DoctorKernel::Cached {
                cached: true,
                release: k.release,
                version: k.version,
            });
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
        capabilities: DoctorCapabilities {
            vm_boot,
            guest_exec,
            guest_network: guest_network.0,
            guest_network_reason: guest_network.1,
        },
        checks,
        findings,
        paths: DoctorPaths { cache: paths.cache.clone(), data: paths.data.clone(), runtime: paths.runtime.clone() },
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

#[cfg(test)]
mod tests {
    use super::*;

    fn report(ready: bool) -> DoctorReport {
        let verdict =
            KvmVerdict { readable: true, writable: true, boot_probe: None, usable: false, reason: "forced".into() };
        DoctorReport {
            ok: ready,
            platform: "linux-x86_64".into(),
            host_kernel: "6.1.0".into(),
            user: "root (uid 0)".into(),
            accelerator: ready.then(|| "tcg".into()),
            accelerator_reason: ready.then(|| "forced".into()),
            kvm: DoctorKvm { exists: true, verdict: ready.then_some(verdict) },
            qemu_version: None,
            kernel: Some(if ready {
                DoctorKernel::Ready { cached: true, package: "p".into(), version: "v".into(), release: "r".into() }
            } else {
                DoctorKernel::Cached { cached: true, release: "r".into(), version: "v".into() }
            }),
            environments: if ready {
                vec![DoctorEnvironment {
                    name: "debian:12".into(),
                    installed: true,
                    version: Some("1.0.0".into()),
                    digest: Some("d".into()),
                    warm_templates: vec![DoctorTemplate { vcpus: 1, mem_mib: 512, nic: false, memory_bytes: 9 }],
                }]
            } else {
                vec![]
            },
            capabilities: DoctorCapabilities {
                vm_boot: ready,
                guest_exec: false,
                guest_network: false,
                guest_network_reason: "no".into(),
            },
            checks: vec![Check { name: "qemu".into(), ok: false, detail: "missing".into() }],
            findings: vec![Finding { problem: "qemu: missing".into(), fix: "install it".into() }],
            paths: DoctorPaths { cache: "/c".into(), data: "/d".into(), runtime: "/r".into() },
        }
    }

    /// The typed report serializes field for field, in order, as the untyped one it replaced
    /// (`pyro doctor --json` is read by scripts and tests): both shapes of `kvm` and `kernel`.
    #[test]
    fn json_is_the_untyped_reports() {
        let tail = r#""checks":[{"name":"qemu","ok":false,"detail":"missing"}],"findings":[{"problem":"qemu: missing","fix":"install it"}],"paths":{"cache":"/c","data":"/d","runtime":"/r"}}"#;
        assert_eq!(
            serde_json::to_string(&report(true)).unwrap(),
            String::from(
                r#"{"ok":true,"platform":"linux-x86_64","host_kernel":"6.1.0","user":"root (uid 0)","accelerator":"tcg","accelerator_reason":"forced","#
            ) + r#""kvm":{"exists":true,"readable":true,"writable":true,"boot_probe":null,"usable":false,"reason":"forced"},"qemu_version":null,"#
                + r#""kernel":{"cached":true,"package":"p","version":"v","release":"r"},"#
                + r#""environments":[{"name":"debian:12","installed":true,"version":"1.0.0","digest":"d","warm_templates":[{"vcpus":1,"mem_mib":512,"nic":false,"memory_bytes":9}]}],"#
                + r#""capabilities":{"vm_boot":true,"guest_exec":false,"guest_network":false,"guest_network_reason":"no"},"#
                + tail
        );
        assert_eq!(
            serde_json::to_string(&report(false)).unwrap(),
            String::from(
                r#"{"ok":false,"platform":"linux-x86_64","host_kernel":"6.1.0","user":"root (uid 0)","accelerator":null,"accelerator_reason":null,"#
            ) + r#""kvm":{"exists":true},"qemu_version":null,"kernel":{"cached":true,"release":"r","version":"v"},"environments":[],"#
                + r#""capabilities":{"vm_boot":false,"guest_exec":false,"guest_network":false,"guest_network_reason":"no"},"#
                + tail
        );
    }
}

//! The hidden subcommands' entry points, detached helpers that `pyro` starts for itself:
//! `pyro __template` builds a warm template, `pyro __spare` prepares a warm spare. They sit
//! above the layers they drive (environments, VMs, workspaces) so those need not know them.

use crate::error::{Error, Result};
use crate::vm::{spare, template};

/// The detached builder (`pyro __template ENV VCPUS MEM nic|no-nic`): exit status 0 when the
/// template is there.
pub fn template_builder_main(args: &[String]) -> i32 {
    let run = || -> Result<()> {
        let [env, vcpus, mem, nic] = args else { return Err(Error::invalid("usage: ENV VCPUS MEM nic|no-nic")) };
        let parse = |s: &str| s.parse::<u32>().map_err(|_| Error::invalid(format!("not a number: {s}")));
        let shape = template::Shape { vcpus: parse(vcpus)?, mem_mib: parse(mem)?, nic: nic == "nic" };
        let host = crate::runtime::Host::from_env()?;
        let rt = host.runtime()?;
        let installed =
            crate::env::installed(&rt.paths, env).ok_or_else(|| Error::not_found(format!("{env} is not installed")))?;
        template::build(rt, &installed.base(), shape, &|l| eprintln!("{l}"))?;
        Ok(())
    };
    match run() {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("template: {}", e.message);
            1
        }
    }
}

/// The detached preparer (`pyro __spare ENV VCPUS MEM`): prepares a spare, then waits out its
/// life and removes it if nobody took it. Exit status 0 unless preparing failed.
pub fn spare_preparer_main(args: &[String]) -> i32 {
    let run = || -> Result<()> {
        let [env, vcpus, mem] = args else { return Err(Error::invalid("usage: ENV VCPUS MEM")) };
        let parse = |s: &str| s.parse::<u32>().map_err(|_| Error::invalid(format!("not a number: {s}")));
        let shape = template::Shape { vcpus: parse(vcpus)?, mem_mib: parse(mem)?, nic: false };
        let host = crate::runtime::Host::from_env()?;
        let rt = host.runtime()?;
        let installed =
            crate::env::installed(&rt.paths, env).ok_or_else(|| Error::not_found(format!("{env} is not installed")))?;
        let ws = crate::workspace::base::Workspaces::open(&host)?;
        // The create that started us is running its first command now: on a small host the
        // restore below would take the CPU from it.
        std::thread::sleep(std::time::Duration::from_secs(1));
        if let Some((id, expires_at)) = ws.prepare_spare(&installed, shape)? {
            eprintln!("spare: {id} ready for {env} ({} vCPU, {} MiB)", shape.vcpus, shape.mem_mib);
            let wait = expires_at.saturating_sub(crate::clock::now_s());
            std::thread::sleep(std::time::Duration::from_secs(wait));
            let dir = rt.paths.workspaces().join(&id);
            if !dir.exists() {
                // Its data dir was removed under it (a test's temp dir): its supervisor is
                // still found by its command line.
                crate::vm::procs::kill_vm(&rt.paths.vms().join(&id));
            } else if let Ok(Some(_lock)) = crate::lockfile::try_lock(&dir.join("lock")) {
                if std::fs::rename(dir.join(spare::SPARE), dir.join(spare::CLAIMED)).is_ok() {
                    spare::discard(&rt.paths, &id);
                    eprintln!("spare: {id} expired unclaimed; removed");
                }
            }
        }
        Ok(())
    };
    match run() {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("spare: {}", e.message);
            1
        }
    }
}

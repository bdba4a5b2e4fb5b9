//! `pyro doctor [--fix]`: the host check, and with `--fix` the sweep of what killed calls left
//! behind (`Pyro::repair`).

use crate::render;

pub fn main(json: bool, fix: bool) -> i32 {
    let pyro = match render::pyro("doctor", json) {
        Ok(p) => p,
        Err(code) => return code,
    };
    if fix {
        match pyro.repair() {
            Ok(r) if json => render::json(&r),
            Ok(r) if r.is_empty() => println!("fix:          nothing left behind by killed calls"),
            Ok(r) => println!(
                "fix:          removed {} half-made workspace(s) {:?}, {} VM dir(s) {:?}; stopped {} supervisor(s); removed {} stale socket(s), {} stale file(s)",
                r.workspaces.len(),
                r.workspaces,
                r.vm_dirs.len(),
                r.vm_dirs,
                r.supervisors_stopped,
                r.stale_sockets,
                r.stale_files
            ),
            Err(e) => return render::error(&e, json),
        }
        if json {
            return 0;
        }
    }
    let r = pyro.doctor();
    if json {
        render::json(&r);
    } else {
        println!("platform:     {} (host kernel {})", r.platform, r.host_kernel);
        println!("user:         {}", r.user);
        println!("qemu:         {}", r.qemu_version.as_deref().unwrap_or("missing"));
        println!(
            "accelerator:  {} ({})",
            r.accelerator.as_deref().unwrap_or("none"),
            r.accelerator_reason.as_deref().unwrap_or("runtime not ready")
        );
        if let Some(k) = &r.kernel {
            println!("kernel:       {} {}", k.release(), k.version());
        } else {
            println!("kernel:       not cached");
        }
        for e in &r.environments {
            println!("environment:  {} {}", e.name, if e.installed { "installed" } else { "not installed" });
        }
        println!(
            "capabilities: vm_boot={} guest_exec={} guest_network={}",
            r.capabilities.vm_boot, r.capabilities.guest_exec, r.capabilities.guest_network
        );
        for c in &r.checks {
            println!("  [{}] {}: {}", if c.ok { "ok" } else { "FAIL" }, c.name, c.detail);
        }
        for f in &r.findings {
            println!("finding: {}\n  fix: {}", f.problem, f.fix);
        }
        println!("result:       {}", if r.ok { "OK" } else { "NOT READY" });
    }
    if r.ok {
        0
    } else {
        pyro_mcp::Code::GuestUnavailable.exit_code()
    }
}

//! `pyro demo`: create, start, exec and delete one VM, printing a JSON record of each step.

use crate::render;
use pyro_mcp::Command;

#[derive(clap::Args)]
pub struct Args {
    /// Environment to use
    #[arg(long, default_value = "debian:12")]
    environment: String,
}

pub fn main(a: Args) -> i32 {
    let pyro = match render::pyro("demo", true) {
        Ok(p) => p,
        Err(code) => return code,
    };
    render::stop_vms_on_signal();
    let started = std::time::Instant::now();
    let mut vm = match pyro.start_vm(&a.environment, 1, 1024) {
        Ok(v) => v,
        Err(e) => return render::error(&e, true),
    };
    let exec = vm.exec(Command::Argv(vec!["git".into(), "--version".into()]), 30, 64 * 1024);
    let (id, boot_ms, accel) = (vm.id.clone(), vm.boot_ms, vm.accelerator.clone());
    let cleanup = vm.delete();
    let exec = match exec {
        Ok(x) => x,
        Err(e) => return render::error(&e, true),
    };
    let ok = exec.result.exit_code == 0 && cleanup.deleted;
    render::json(&serde_json::json!({
        "ok": ok,
        "vm_id": id,
        "environment": a.environment,
        "accelerator": accel,
        "lifecycle": ["create", "start", "exec", "delete"],
        "boot_ms": boot_ms,
        "exec": exec,
        "cleanup": cleanup,
        "total_ms": started.elapsed().as_millis() as u64,
    }));
    if ok {
        0
    } else {
        1
    }
}

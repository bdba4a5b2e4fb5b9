//! `pyro run ENV -- CMD...`

use crate::render;
use pyro_mcp::{Command, RunOptions};
use std::io::Write;

#[derive(clap::Args)]
pub struct Args {
    /// Environment to boot (see `pyro env list`)
    environment: String,
    #[arg(long, default_value_t = pyro_mcp::limits::DEFAULT_VCPUS)]
    vcpu_count: u32,
    #[arg(long, default_value_t = pyro_mcp::limits::DEFAULT_MEM_MIB)]
    mem_mib: u32,
    /// Kill the command (and everything it started) after this long; exit code 124
    #[arg(long, default_value_t = pyro_mcp::limits::DEFAULT_TIMEOUT_S)]
    timeout_seconds: u64,
    /// Per-stream output cap in bytes (head and tail are kept around a marker)
    #[arg(long, default_value_t = pyro_mcp::limits::DEFAULT_MAX_OUTPUT)]
    max_output_bytes: u64,
    /// Environment variable for the command (repeatable)
    #[arg(long = "env", value_name = "NAME=VALUE")]
    env: Vec<String>,
    /// If no guest can boot, run in a bubblewrap sandbox on the host instead (degraded)
    #[arg(long)]
    allow_host_compat: bool,
    #[command(flatten)]
    network: super::NetworkArgs,
    /// The command: several words run as argv, exactly one word runs through /bin/sh -c
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

pub fn main(a: Args, json: bool) -> i32 {
    let Some(command) = Command::from_words(&a.command) else {
        return render::error(
            &pyro_mcp::Error::invalid("no command given").hint("pyro run debian:12 -- git --version"),
            json,
        );
    };
    let mut env = Vec::new();
    for kv in &a.env {
        match kv.split_once('=') {
            Some((k, v)) => env.push((k.to_string(), v.to_string())),
            None => {
                return render::error(&pyro_mcp::Error::invalid(format!("--env takes NAME=VALUE, got '{kv}'")), json)
            }
        }
    }
    let network = match a.network.options() {
        Ok(n) => n,
        Err(e) => return render::error(&e, json),
    };
    let pyro = match render::pyro("run", json) {
        Ok(p) => p,
        Err(code) => return code,
    };
    render::stop_vms_on_signal();
    let opts = RunOptions {
        vcpus: a.vcpu_count,
        mem_mib: a.mem_mib,
        timeout_s: a.timeout_seconds,
        max_output_bytes: a.max_output_bytes,
        env,
        allow_host_compat: a.allow_host_compat,
        network,
        ..RunOptions::new(a.environment, command)
    };
    let r = match pyro.run(opts) {
        Ok(r) => r,
        Err(e) => return render::error(&e, json),
    };
    if json {
        render::json(&r);
    } else {
        let _ = std::io::stdout().write_all(&r.stdout);
        let _ = std::io::stdout().flush();
        let _ = std::io::stderr().write_all(&r.stderr);
        eprintln!("[run] {}", r.status_line());
    }
    r.exit_code
}

//! `make bench`: where the time goes, as medians over repeated runs on this host.
//!
//! - floor: QEMU start to our init's first instruction (the kernel alone, `pyro.mode=floor`);
//! - probe: the same plus loading the virtio modules;
//! - cold run: `pyro run debian:12 -- true`, process start to exit (overlay, boot, exec, teardown);
//! - exec round trip: `true` in a running VM through the SDK;
//! - workspaces: create, reset, sync, exec through the CLI and the SDK, and a static binary's
//!   exec next to `true`'s (`PYRO_BENCH_ONLY=workspaces`);
//! - big trees: diff right after 3,000 files changed, diff and summary of a 20,000-file
//!   workspace with tracking on and off, a 10 MB patch apply (`PYRO_BENCH_ONLY=scale`);
//! - mcp server: spawn to the `tools/list` answer per profile, and that answer's size; over
//!   HTTP next to stdio, the `tools/list` and `workspace_exec true` round trips, and
//!   `tools/list` per second with 8 clients (`PYRO_BENCH_ONLY=http`);
//! - services: `service start` -> ready for a service that is ready at once, and its stop;
//! - snapshots: `snapshot create` on 1,000 and 20,000 files, `reset --snapshot` -> first exec;
//!   stop, start -> first exec, the memory file's size (`PYRO_BENCH_ONLY=snapshots`);
//! - templates: with warm templates on and off, create -> first exec, `pyro run`, fork ->
//!   first exec, idle workspace PSS (`PYRO_BENCH_ONLY=templates`);
//! - fork: ten forks of a running workspace -> first exec, with the source's pause, medians
//!   and maxima, idle and with 400 MiB of its memory used (`PYRO_BENCH_ONLY=fork`).
//!
//! Numbers are printed, never asserted: timings belong here, not in tests.

#[path = "bench/workspace.rs"]
mod workspace_bench;

#[path = "bench/env.rs"]
mod env_bench;

#[path = "bench/mcp.rs"]
mod mcp_bench;

#[path = "bench/mcp_http.rs"]
mod mcp_http_bench;

#[path = "bench/scale.rs"]
mod scale_bench;

#[path = "bench/net.rs"]
mod net_bench;

#[path = "bench/service.rs"]
mod service_bench;

#[path = "bench/shell.rs"]
mod shell_bench;

#[path = "bench/snapshot.rs"]
mod snapshot_bench;

#[path = "bench/template.rs"]
mod template_bench;

#[path = "bench/fork.rs"]
mod fork_bench;

use pyro_mcp::internal as vm;
use pyro_mcp::{Command, Pyro};
use std::time::Instant;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn report(name: &str, v: &[f64], unit: &str) -> f64 {
    let m = median(v.to_vec());
    let (lo, hi) = v.iter().fold((f64::MAX, f64::MIN), |(a, b), &x| (a.min(x), b.max(x)));
    println!("{name:<42} median {m:>8.1} {unit}  (min {lo:.1}, max {hi:.1}, n={})", v.len());
    m
}

fn main() {
    let runs: usize = std::env::var("PYRO_BENCH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(7);
    let pyro = Pyro::new().expect("paths");
    let rt = match pyro.runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {}", e.message);
            std::process::exit(1);
        }
    };
    println!("accelerator: {} ({})", rt.accel.accel.as_str(), rt.accel.reason);
    println!("kernel: {}", rt.kernel.release);

    // `PYRO_BENCH_ONLY=SECTION` runs one section (minutes instead of the whole run); `big` is
    // the big-tree, network and MCP sections together.
    let only = std::env::var("PYRO_BENCH_ONLY").unwrap_or_default();
    let section = |title: &str| println!("-- {title}");
    match only.as_str() {
        "big" => big_sections(&pyro, runs),
        "snapshots" => {
            section("snapshots, stop and start");
            snapshot_bench::run(&pyro, runs, &report);
        }
        "templates" => {
            section("warm templates");
            template_bench::run(runs, &report);
        }
        "workspaces" => {
            section("workspaces");
            workspace_bench::run(&pyro, runs, &report);
        }
        "scale" => {
            section("big trees and big patches");
            scale_bench::run(&pyro, runs, &report);
        }
        "fork" => {
            section("fork");
            fork_bench::run(runs, &report);
        }
        "http" => {
            section("mcp over http");
            mcp_http_bench::run(&report);
        }
        "session" => session_sections(&pyro, runs),
        "" => {}
        other => {
            eprintln!(
                "error: PYRO_BENCH_ONLY={other}: no such section (big, snapshots, templates, workspaces, scale, fork, \
                 http, session; python and pull are make bench's)"
            );
            std::process::exit(2);
        }
    }
    if !only.is_empty() {
        return;
    }
    let boot = |mode: vm::VmMode| -> Vec<f64> {
        (0..runs)
            .map(|_| {
                let (_id, dir) = vm::new_vm_dir(rt).expect("vm dir");
                let cfg = vm::MachineConfig {
                    accel: rt.accel.accel,
                    vcpus: 1,
                    mem_mib: 1024,
                    kernel: rt.kernel.vmlinuz.clone(),
                    initrd: rt.initramfs.clone(),
                    mode,
                    tsc_khz: rt.accel.tsc_khz,
                    disk: None,
                    nic: false,
                    dir: dir.clone(),
                };
                let ms = vm::boot_to_init(&rt.qemu, &cfg, std::time::Duration::from_secs(60)).expect("boot");
                let _ = std::fs::remove_dir_all(&dir);
                ms as f64
            })
            .collect()
    };
    let floor = report("floor: QEMU start -> init (kernel only)", &boot(vm::VmMode::Floor), "ms");
    report("probe: QEMU start -> init + virtio modules", &boot(vm::VmMode::Probe), "ms");

    let pyro_bin = pyro_mcp::internal::pyro_binary().expect("pyro binary");
    let cold: Vec<f64> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            let o =
                std::process::Command::new(&pyro_bin).args(["run", "debian:12", "--", "true"]).output().expect("run");
            assert!(o.status.success(), "pyro run failed: {}", String::from_utf8_lossy(&o.stderr));
            t.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    let cold = report("cold `pyro run debian:12 -- true` to exit", &cold, "ms");
    println!("{:<42} {:>15.2}x  (target <= 1.5x)", "cold run / floor", cold / floor);

    let t = Instant::now();
    let mut s = pyro.start_vm("debian:12", 1, 1024).expect("start vm");
    println!("{:<42} {:>8.1} ms  (create overlay + boot, once)", "SDK start_vm", t.elapsed().as_secs_f64() * 1000.0);
    // Warm up the guest's page cache for /bin/true, then measure.
    for _ in 0..3 {
        s.exec(Command::Argv(vec!["true".into()]), 10, 1024).expect("exec");
    }
    let rtt: Vec<f64> = (0..30)
        .map(|_| {
            let t = Instant::now();
            let o = s.exec(Command::Argv(vec!["true".into()]), 10, 1024).expect("exec");
            assert_eq!(o.result.exit_code, 0);
            t.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    let pings: Vec<f64> = (0..30).map(|_| s.ping().expect("ping").as_secs_f64() * 1000.0).collect();
    report("protocol round trip (ping, no process)", &pings, "ms");
    let m = report("exec round trip of `true` (SDK)", &rtt, "ms");
    println!("{:<42} {:>15}  (target < 10 ms)", "", if m < 10.0 { "met" } else { "missed" });
    let t = Instant::now();
    let c = s.delete();
    println!("{:<42} {:>8.1} ms  (deleted={})", "SDK delete", t.elapsed().as_secs_f64() * 1000.0, c.deleted);

    println!("-- workspaces");
    workspace_bench::run(&pyro, runs, &report);
    println!("-- warm templates");
    template_bench::run(runs, &report);
    println!("-- fork");
    fork_bench::run(runs, &report);

    big_sections(&pyro, runs);
    env_bench::run(&pyro);
}

/// Big trees and patches, guest networking, and the MCP server (startup to tools/list per
/// profile, and the tools/list size).
fn big_sections(pyro: &Pyro, runs: usize) {
    println!("-- big trees and big patches");
    scale_bench::run(pyro, runs, &report);
    println!("-- guest networking");
    net_bench::run(pyro, runs, &report);
    session_sections(pyro, runs);
}

/// The MCP server, services, shells and snapshots (`PYRO_BENCH_ONLY=session` runs just these).
fn session_sections(pyro: &Pyro, runs: usize) {
    println!("-- mcp server");
    mcp_bench::run(pyro, &report);
    mcp_http_bench::run(&report);
    println!("-- services and shells");
    service_bench::run(pyro, runs, &report);
    shell_bench::run(pyro, runs, &report);
    println!("-- snapshots");
    snapshot_bench::run(pyro, runs, &report);
}

//! `pyro run` against real microVMs (TCG on hosts where KVM is unusable).

use crate::common::*;
use std::time::{Duration, Instant};

#[test]
fn git_version_runs_in_debian12() {
    let t = Env::new();
    let o = t.run(&["run", "--json", "debian:12", "--", "git", "--version"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v = json(&o);
    assert!(v["stdout"].as_str().unwrap().starts_with("git version 2."), "{v}");
    assert_eq!(v["execution_mode"], "guest_vm");
    assert_eq!(v["cleanup"]["deleted"], true);
    assert!(v["boot_ms"].as_u64().unwrap() > 0);
    t.assert_clean();
}

#[test]
fn exit_codes_and_shell_vs_argv() {
    let t = Env::new();
    let o = t.run(&["run", "debian:12", "--", "sh", "-c", "echo out; echo err >&2; exit 7"]);
    assert_eq!(o.status.code(), Some(7));
    assert_eq!(stdout(&o), "out\n");
    assert!(stderr(&o).starts_with("err\n"), "{}", stderr(&o));
    assert!(stderr(&o).contains("[run] environment=debian:12 execution_mode=guest_vm"), "{}", stderr(&o));
    // Exactly one word runs through /bin/sh -c.
    let o = t.run(&["run", "debian:12", "--", "echo \"a b\" | wc -w"]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(stdout(&o).trim(), "2");
    // Several words are argv: no shell expands the `$HOME` here.
    let o = t.run(&["run", "debian:12", "--", "echo", "$HOME", "a  b"]);
    assert_eq!(stdout(&o), "$HOME a  b\n");
    t.assert_clean();
}

#[test]
fn timeout_kills_the_process_group() {
    let t = Env::new();
    let start = Instant::now();
    let o = t.run(&["run", "--timeout-seconds", "2", "debian:12", "--", "sh", "-c", "sleep 30 & sleep 30"]);
    assert_eq!(o.status.code(), Some(124), "{}", stderr(&o));
    assert!(stderr(&o).contains("timed_out=true"));
    // Bounded, not a benchmark: far less than the 30 s the command wanted.
    assert!(start.elapsed() < Duration::from_secs(25));
    t.assert_clean();
}

#[test]
fn flooding_output_is_capped_with_marker() {
    let t = Env::new();
    let o = t.run(&["run", "--timeout-seconds", "3", "--max-output-bytes", "65536", "debian:12", "--", "yes"]);
    assert_eq!(o.status.code(), Some(124));
    let out = stdout(&o);
    assert!(out.len() < 65536 + 200, "output not capped: {} bytes", out.len());
    assert!(out.contains("[pyro: output truncated, "), "no marker");
    assert!(out.starts_with("y\ny\n") && out.ends_with("y\n"));
    t.assert_clean();
}

#[test]
fn background_children_do_not_hang_the_call() {
    let t = Env::new();
    let o = t.run(&[
        "run",
        "--timeout-seconds",
        "60",
        "debian:12",
        "--",
        "sh -c 'sleep 100 >/dev/null 2>&1 &' ; (sleep 100 &) ; echo started",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), "started\n");
    let v: u64 = stderr(&o).split("duration_ms=").nth(1).unwrap().split_whitespace().next().unwrap().parse().unwrap();
    assert!(v < 50_000, "the call waited for background children ({v} ms)");
    t.assert_clean();
}

#[test]
fn sigterm_mid_run_leaves_nothing_behind() {
    let t = Env::new();
    let mut child = t.cmd().args(["run", "debian:12", "--", "sleep", "60"]).spawn().unwrap();
    // Wait until the VM is booting (its supervisor exists), then interrupt.
    let start = Instant::now();
    while processes_mentioning(t.runtime.path()).is_empty() && start.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(2500));
    // SAFETY: kill takes no pointers; the pid is our own unreaped child, so it is not reused.
    unsafe { libc_kill(child.id() as i32, 15) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(143));
    t.assert_clean();
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

#[test]
fn bad_input_is_one_line_and_starts_nothing() {
    let t = Env::new();
    let o = t.run(&["run", "debian:99", "--", "true"]);
    assert_eq!(o.status.code(), Some(3));
    assert!(
        stderr(&o).starts_with("error: unknown environment 'debian:99'\nhint: available: debian:12"),
        "{}",
        stderr(&o)
    );
    let o = t.run(&["run", "--vcpu-count", "0", "debian:12", "--", "true"]);
    assert_eq!(o.status.code(), Some(2));
    let o = t.run(&["run", "--mem-mib", "100000000", "debian:12", "--", "true"]);
    assert_eq!(o.status.code(), Some(2));
    let o = t.run(&["run", "--json", "--timeout-seconds", "0", "debian:12", "--", "true"]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(json(&o)["error"]["code"], "invalid_argument");
    assert!(!stderr(&o).contains("panicked"));
    t.assert_clean();
}

#[test]
fn missing_qemu_fails_clearly_unless_host_compat() {
    let t = Env::new();
    let o = t.cmd().env("PYRO_QEMU", "/nonexistent/qemu").args(["run", "debian:12", "--", "true"]).output().unwrap();
    assert_eq!(o.status.code(), Some(6), "{}", stderr(&o));
    assert!(stderr(&o).contains("error: "), "{}", stderr(&o));
    let o = t
        .cmd()
        .env("PYRO_QEMU", "/nonexistent/qemu")
        .args([
            "run",
            "--json",
            "--allow-host-compat",
            "debian:12",
            "--",
            "sh",
            "-c",
            "touch /workspace/ok && ls /workspace && (touch /etc/x 2>/dev/null && echo writable || echo readonly) && \
             (test -e /etc/shadow -o -e /etc/hostname && echo host-etc || echo minimal-etc) && id -un",
        ])
        .output()
        .unwrap();
    if std::path::Path::new("/usr/bin/bwrap").exists() {
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let v = json(&o);
        assert_eq!(v["execution_mode"], "host_compat");
        // The host's /etc stays hidden: a minimal one with a synthetic passwd instead.
        assert_eq!(v["stdout"], "ok\nreadonly\nminimal-etc\nroot\n");
    }
    t.assert_clean();
}

#[test]
fn demo_prints_lifecycle_with_cleanup() {
    let t = Env::new();
    let o = t.run(&["demo"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v = json(&o);
    assert_eq!(v["ok"], true);
    assert_eq!(v["cleanup"]["deleted"], true);
    assert!(v["exec"]["stdout"].as_str().unwrap().starts_with("git version"));
    t.assert_clean();
}

#[test]
fn doctor_reports_accelerator_and_reason() {
    let t = Env::new();
    let o = t.run(&["doctor", "--json"]);
    let v = json(&o);
    assert_eq!(o.status.code(), Some(0), "{v}");
    let accel = v["accelerator"].as_str().unwrap();
    assert!(accel == "kvm" || accel == "tcg");
    assert!(!v["accelerator_reason"].as_str().unwrap().is_empty());
    assert_eq!(v["capabilities"]["vm_boot"], true);
    assert_eq!(v["capabilities"]["guest_exec"], true);
    if accel == "tcg" && std::path::Path::new("/dev/kvm").exists() {
        // Here /dev/kvm exists but cannot boot guests: the reason must say why.
        assert!(v["kvm"]["reason"].as_str().unwrap().contains("KVM"), "{v}");
    }
    t.assert_clean();
}

#[test]
fn kernel_download_failure_is_one_line_with_hint() {
    let t = Env::new();
    let cache = tempfile::tempdir().unwrap();
    // Nothing listens on port 9 of loopback: the fetch fails at once.
    let o = t
        .cmd()
        .env("PYRO_CACHE_DIR", cache.path())
        .env("PYRO_DEBIAN_MIRROR", "http://127.0.0.1:9/debian")
        .args(["run", "debian:12", "--", "true"])
        .output()
        .unwrap();
    let err = stderr(&o);
    assert_ne!(o.status.code(), Some(0));
    assert!(!err.contains("panicked"), "{err}");
    let error_lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(error_lines.len(), 1, "{err}");
    assert!(err.contains("PYRO_DEBIAN_MIRROR"), "{err}");
    // Nothing half-installed: no kernel directory besides in-progress leftovers.
    let kernels: Vec<_> = std::fs::read_dir(cache.path().join("kernels"))
        .map(|d| {
            d.flatten().filter(|e| e.path().is_dir() && !e.file_name().to_string_lossy().starts_with('.')).collect()
        })
        .unwrap_or_default();
    assert!(kernels.is_empty(), "{kernels:?}");
    t.assert_clean();
}

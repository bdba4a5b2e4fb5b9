//! `pyro` finds itself: a CLI copied or installed under another name starts VM supervisors
//! from its own executable (`/proc/self/exe`), not from a `pyro` it searches for. And a
//! dynamically linked guest agent is refused before boot with an error that names the fix.
//!
//! Both tests run a copy of the built `pyro` named `my-sandbox`, alone in a temp dir, with
//! `PYRO_BIN` removed and a `PATH` without any `pyro`: the old search (neighbours, then PATH)
//! would find nothing there, so success can only come from the running executable.

use crate::common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A copy of the built pyro, under another name, in a directory of its own.
struct Copy {
    dir: tempfile::TempDir,
    exe: PathBuf,
}

/// Run a command of the copied binary. A test running beside this one may fork while the copy
/// was still open for writing here (the descriptor is close-on-exec, but open in the child
/// until it execs): exec then fails with ETXTBSY for that moment, so it is retried.
fn output(c: &mut std::process::Command) -> std::process::Output {
    for _ in 0..200 {
        match c.output() {
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy => {
                std::thread::sleep(std::time::Duration::from_millis(10))
            }
            r => return r.unwrap(),
        }
    }
    panic!("the copied pyro stayed busy (ETXTBSY) for 2 s")
}

fn copy_pyro() -> Copy {
    let dir = tempfile::Builder::new().prefix("pyro-selfexe").tempdir().unwrap();
    let exe = dir.path().join("my-sandbox");
    std::fs::copy(env!("CARGO_BIN_EXE_pyro"), &exe).unwrap();
    Copy { dir, exe }
}

/// System directories for QEMU and friends, minus any that hold a `pyro`.
fn path_without_pyro(extra_first: Option<&Path>) -> String {
    let dirs = ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"];
    let kept = dirs.iter().filter(|d| !Path::new(d).join("pyro").exists()).map(|d| d.to_string());
    extra_first.map(|p| p.display().to_string()).into_iter().chain(kept).collect::<Vec<_>>().join(":")
}

/// The static guest agent the VM test boots: `PYRO_GUEST_BIN` (what `make test` sets), else
/// the one beside the built pyro (where pyro itself would look).
fn guest_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("PYRO_GUEST_BIN").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let beside = Path::new(env!("CARGO_BIN_EXE_pyro")).with_file_name("pyro-guest");
    assert!(beside.is_file(), "set PYRO_GUEST_BIN to a static pyro-guest (make build builds one)");
    beside
}

fn cmd(copy: &Copy, t: &Env, path: &str, guest: &Path) -> Command {
    let mut c = Command::new(&copy.exe);
    c.env_remove("PYRO_BIN")
        .env_remove("PYRO_ACCEL")
        .env("PATH", path)
        .env("PYRO_GUEST_BIN", guest)
        .env("PYRO_RUNTIME_DIR", t.runtime.path());
    c
}

#[test]
fn renamed_cli_supervises_its_own_vms() {
    let copy = copy_pyro();
    let t = Env::new();
    let guest = guest_bin();
    let path = path_without_pyro(None);
    let o = output(cmd(&copy, &t, &path, &guest).args(["run", "debian:12", "--", "true"]));
    assert_eq!(o.status.code(), Some(0), "my-sandbox run failed: {}", stderr(&o));
    t.assert_clean();

    // With a decoy `pyro` first on PATH, the copy still supervises with itself: the decoy
    // (which the old search would have picked) is never run.
    let decoy_dir = copy.dir.path().join("decoy");
    std::fs::create_dir(&decoy_dir).unwrap();
    let marker = copy.dir.path().join("decoy-ran");
    let decoy = decoy_dir.join("pyro");
    std::fs::write(&decoy, format!("#!/bin/sh\ntouch '{}'\nexit 99\n", marker.display())).unwrap();
    std::fs::set_permissions(&decoy, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let path = path_without_pyro(Some(&decoy_dir));
    let o = output(cmd(&copy, &t, &path, &guest).args(["run", "--json", "debian:12", "--", "echo", "hi"]));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(json(&o)["stdout"], "hi\n");
    assert!(!marker.exists(), "the decoy pyro on PATH was run as the supervisor");
    t.assert_clean();
}

/// Whether pyro's cache (resolved as `Paths::from_env` does) holds a kernel.
fn kernel_cached() -> bool {
    let nonempty = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    let cache = nonempty("PYRO_CACHE_DIR")
        .or_else(|| nonempty("XDG_CACHE_HOME").map(|p| p.join("pyro-mcp")))
        .or_else(|| nonempty("HOME").map(|p| p.join(".cache/pyro-mcp")));
    let Some(cache) = cache else { return false };
    std::fs::read_dir(cache.join("kernels"))
        .map(|d| d.flatten().any(|e| e.path().join("vmlinuz").is_file()))
        .unwrap_or(false)
}

#[test]
fn dynamic_guest_is_refused_before_boot_with_the_fix() {
    if !kernel_cached() {
        // The check runs after the kernel is in place; without a cached kernel this test
        // would download one first.
        return skip("no kernel in pyro's cache (run `make setup` or any `pyro run` first)");
    }
    let copy = copy_pyro();
    let t = Env::new();
    // /bin/true is a dynamically linked ELF: a plausible "forgot the static build" agent.
    let path = path_without_pyro(None);
    let start = Instant::now();
    let o = output(cmd(&copy, &t, &path, Path::new("/bin/true")).args(["run", "debian:12", "--", "true"]));
    assert!(start.elapsed() < Duration::from_secs(30), "took {:?}: did it boot?", start.elapsed());
    assert_ne!(o.status.code(), Some(0));
    let err = stderr(&o);
    let lines: Vec<&str> = err.lines().collect();
    // One error line (plus pyro's usual `hint:` line naming the fix), no panic or backtrace.
    assert!(lines[0].starts_with("error: guest agent /bin/true is dynamically linked"), "{err}");
    assert!(lines.len() <= 2, "{err}");
    assert!(err.contains("make build") && err.contains("+crt-static"), "the fix is not named: {err}");
    assert!(!err.contains("panicked"), "{err}");
    // It got past finding the supervisor binary (the copy, by itself) to the guest check.
    assert!(!err.contains("cannot find the pyro binary"), "{err}");
    t.assert_clean();

    let o = output(cmd(&copy, &t, &path, Path::new("/bin/true")).args(["run", "--json", "debian:12", "--", "true"]));
    let v = json(&o);
    assert_eq!(v["error"]["code"], "guest_unavailable", "{v}");
    assert!(v["error"]["hint"].as_str().unwrap_or_default().contains("make build"), "{v}");
}

//! The SDK (`pyro_mcp::Pyro`) against real microVMs: one VM, several commands, then delete.
//! It lives in pyro-cli's test binary, not in a binary of pyro-mcp's own: each test binary
//! links the whole library again (a couple of minutes here), and this one is small.

use pyro_mcp::paths::Paths;
use pyro_mcp::{Code, Command, Pyro, RunOptions};

fn pyro(runtime: &std::path::Path) -> Pyro {
    let mut paths = Paths::from_env().unwrap();
    paths.runtime = runtime.to_path_buf();
    // No warm spares: each test's VMs are its own and gone when it ends (tests/spares.rs
    // covers spares).
    Pyro::with_paths(paths).with_spares(false)
}

#[test]
fn session_runs_several_commands_then_deletes() {
    let rt = tempfile::tempdir().unwrap();
    let p = pyro(rt.path());
    let mut vm = p.start_vm("debian:12", 1, 512).unwrap();
    let o = vm.exec(Command::Shell("echo hello > /tmp/f && cat /tmp/f".into()), 10, 1024).unwrap();
    assert_eq!(o.stdout, b"hello\n");
    // State persists between calls in one VM.
    let o = vm.exec(Command::Argv(vec!["cat".into(), "/tmp/f".into()]), 10, 1024).unwrap();
    assert_eq!(o.stdout, b"hello\n");
    // cwd defaults to /workspace.
    let o = vm.exec(Command::Argv(vec!["pwd".into()]), 10, 1024).unwrap();
    assert_eq!(o.stdout, b"/workspace\n");
    // A missing program is exit 127 with a message, like a shell.
    let o = vm.exec(Command::Argv(vec!["no-such-program".into()]), 10, 1024).unwrap();
    assert_eq!(o.result.exit_code, 127);
    assert!(String::from_utf8_lossy(&o.stderr).contains("no-such-program"));
    // Killed by a signal: 128 + signal number.
    let o = vm.exec(Command::Shell("kill -9 $$".into()), 10, 1024).unwrap();
    assert_eq!(o.result.exit_code, 137);
    assert_eq!(o.result.signal, Some(9));
    assert!(vm.ping().is_ok());
    let c = vm.delete();
    assert!(c.deleted);
    assert_eq!(std::fs::read_dir(rt.path().join("vms")).unwrap().count(), 0);
}

#[test]
fn run_passes_env_and_reports() {
    let rt = tempfile::tempdir().unwrap();
    let p = pyro(rt.path());
    let mut o = RunOptions::new("debian:12", Command::Shell("echo $GREETING; uname -n".into()));
    o.env = vec![("GREETING".into(), "hi there".into())];
    let r = p.run(o).unwrap();
    assert_eq!(r.exit_code, 0);
    // Every guest has its own hostname, pyro-<its VM id>.
    let out = String::from_utf8_lossy(&r.stdout).to_string();
    let host = out.strip_prefix("hi there\npyro-").and_then(|h| h.strip_suffix('\n')).unwrap_or_default();
    assert!(host.len() == 12 && host.bytes().all(|b| b.is_ascii_hexdigit()), "{out}");
    assert_eq!(r.execution_mode, "guest_vm");
    assert!(r.cleanup.deleted);
}

#[test]
fn invalid_input_is_rejected_before_anything_starts() {
    let rt = tempfile::tempdir().unwrap();
    let p = pyro(rt.path());
    let mut o = RunOptions::new("debian:12", Command::Argv(vec![]));
    assert_eq!(p.run(o.clone()).unwrap_err().code, Code::InvalidArgument);
    o.command = Command::Shell("true".into());
    o.env = vec![("BAD NAME".into(), "x".into())];
    assert_eq!(p.run(o.clone()).unwrap_err().code, Code::InvalidArgument);
    o.env = vec![];
    o.environment = "nope:1".into();
    let e = p.run(o).unwrap_err();
    assert_eq!(e.code, Code::NotFound);
    assert!(e.hint.unwrap().contains("debian:12"));
    assert!(!rt.path().join("vms").exists() || std::fs::read_dir(rt.path().join("vms")).unwrap().count() == 0);
}

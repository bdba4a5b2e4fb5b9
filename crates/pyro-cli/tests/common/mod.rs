//! Shared test helpers: run the real `pyro` binary with a private runtime dir, check that
//! nothing pyro started is left behind afterwards, list a guest's processes from `/proc`, and
//! skip a test whose prerequisite is missing (a failure under CI).

#![allow(dead_code)]

pub mod contract;
pub mod http;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub struct Env {
    pub runtime: tempfile::TempDir,
}

impl Env {
    pub fn new() -> Env {
        Env { runtime: tempfile::Builder::new().prefix("pyro-test-rt").tempdir().unwrap() }
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_pyro"));
        // No warm spares unless a test asks (tests/spares.rs): a test's VMs end with it.
        c.env("PYRO_RUNTIME_DIR", self.runtime.path()).env_remove("PYRO_ACCEL").env("PYRO_SPARES", "off");
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().expect("run pyro")
    }

    /// No VM directory, socket or process mentioning our runtime dir remains.
    pub fn assert_clean(&self) {
        let vms = self.runtime.path().join("vms");
        let left: Vec<PathBuf> =
            std::fs::read_dir(&vms).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default();
        assert!(left.is_empty(), "VM dirs left behind: {left:?}");
        let procs = processes_mentioning(self.runtime.path());
        assert!(procs.is_empty(), "processes left behind: {procs:?}");
    }
}

pub fn processes_mentioning(dir: &Path) -> Vec<String> {
    let needle = dir.to_string_lossy().to_string();
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(&needle) {
            out.push(format!("{}: {}", e.file_name().to_string_lossy(), cmdline));
        }
    }
    out
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

pub fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(o)))
}

/// `pyro` with a private runtime dir (the `Env`) and a private data dir: one user's workspaces.
pub struct Ws<'a> {
    pub t: &'a Env,
    pub data: tempfile::TempDir,
}

impl<'a> Ws<'a> {
    pub fn new(t: &'a Env) -> Ws<'a> {
        Ws { t, data: tempfile::tempdir().unwrap() }
    }

    pub fn cmd(&self) -> Command {
        let mut c = self.t.cmd();
        c.env("PYRO_DATA_DIR", self.data.path());
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().unwrap()
    }

    /// A call that must succeed; its `--json` output.
    pub fn ok(&self, args: &[&str]) -> serde_json::Value {
        let o = self.run(args);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}{}", stdout(&o), stderr(&o));
        json(&o)
    }

    /// A call that must fail with one `error:` line and no panic: its exit code and stderr.
    pub fn fails(&self, args: &[&str]) -> (i32, String) {
        let o = self.run(args);
        let err = stderr(&o);
        assert_ne!(o.status.code(), Some(0), "{args:?} should fail: {}", stdout(&o));
        assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
        assert_eq!(err.lines().filter(|l| l.starts_with("error:")).count(), 1, "{args:?}: {err}");
        (o.status.code().unwrap_or(-1), err)
    }

    /// Stdout of a shell script run in workspace `id`; the script must exit 0.
    pub fn sh(&self, id: &str, script: &str) -> String {
        let o = self.run(&["workspace", "exec", id, "--timeout-seconds", "120", "--", script]);
        assert_eq!(o.status.code(), Some(0), "{script:?} in {id}: {}{}", stdout(&o), stderr(&o));
        stdout(&o)
    }

    /// Exit code and stdout of a shell script run in workspace `id`, whatever its status: for
    /// a script expected to fail, whose caller checks the code itself.
    pub fn sh_status(&self, id: &str, script: &str) -> (Option<i32>, String) {
        let o = self.run(&["workspace", "exec", id, "--timeout-seconds", "120", "--", script]);
        (o.status.code(), stdout(&o))
    }

    /// The guest's processes, read from `/proc` (see [`GUEST_PS`]).
    pub fn guest_processes(&self, id: &str) -> Vec<GuestProc> {
        parse_guest_ps(&self.sh(id, GUEST_PS))
    }

    /// The guest's processes that `what` matches. A check that something is gone asserts this
    /// is empty; each such check also asserts it is not while the process still runs, so the
    /// check is known to fail when it should.
    pub fn guest_processes_where(&self, id: &str, what: impl Fn(&GuestProc) -> bool) -> Vec<GuestProc> {
        self.guest_processes(id).into_iter().filter(|p| what(p)).collect()
    }
}

/// One guest process as `/proc` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestProc {
    pub pid: u32,
    /// `/proc/PID/comm`: the executable's name, at most 15 bytes.
    pub comm: String,
    /// `/proc/PID/cmdline` split at NULs (empty for kernel threads).
    pub argv: Vec<String>,
}

/// A guest shell script that lists every process from `/proc`, for images without procps
/// (`debian:12` has no `ps`, `pgrep` or `pkill`): two processes (grep and tr) whatever the
/// process count, so it is quick enough to poll under emulation. Each output line is
/// `/proc/PID/comm:NAME` or `/proc/PID/cmdline:ARG` (one line per argument, in order).
/// A process that exits while it runs is left out. [`parse_guest_ps`] reads it;
/// `tests/clients/ts_client.mjs` gets it in `PYRO_GUEST_PS` and reads it the same way.
pub const GUEST_PS: &str = "grep -a -H -z '' /proc/[0-9]*/comm /proc/[0-9]*/cmdline 2>/dev/null | tr '\\0' '\\n'";

/// The processes in [`GUEST_PS`]'s output, by pid.
pub fn parse_guest_ps(out: &str) -> Vec<GuestProc> {
    let mut procs: std::collections::BTreeMap<u32, GuestProc> = Default::default();
    for line in out.lines() {
        let Some(rest) = line.strip_prefix("/proc/") else { continue };
        let Some((pid, rest)) = rest.split_once('/') else { continue };
        let Ok(pid) = pid.parse::<u32>() else { continue };
        let p = procs.entry(pid).or_insert_with(|| GuestProc { pid, comm: String::new(), argv: Vec::new() });
        if let Some(name) = rest.strip_prefix("comm:") {
            p.comm = name.to_string();
        } else if let Some(arg) = rest.strip_prefix("cmdline:") {
            p.argv.push(arg.to_string());
        }
    }
    procs.into_values().collect()
}

/// What `GUEST_PS` prints becomes processes: names, argv in order, kernel threads with none,
/// and the output of a process that went away halfway still parses.
#[test]
fn guest_ps_output_is_parsed() {
    let out = "/proc/1/comm:pyro-guest\n\n/proc/1/cmdline:/init\n/proc/2/comm:kthreadd\n\n\
               /proc/77/comm:sleep\n\n/proc/77/cmdline:sleep\n/proc/77/cmdline:600\n/proc/78/comm:sh\n\n";
    let p = parse_guest_ps(out);
    let argv = |pid: u32| p.iter().find(|x| x.pid == pid).map(|x| (x.comm.as_str(), x.argv.clone()));
    assert_eq!(p.len(), 4, "{p:?}");
    assert_eq!(argv(2), Some(("kthreadd", vec![])));
    assert_eq!(argv(77), Some(("sleep", vec!["sleep".to_string(), "600".to_string()])));
    assert_eq!(argv(78), Some(("sh", vec![])));
}

/// Whether `CI` is set (as `.ci/run` and CI systems set it): missing prerequisites fail there.
pub fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// This test (or the part of it the caller leaves out) cannot run here because `reason`.
/// Under CI that fails the test with the reason. Elsewhere it is written straight to the
/// terminal (past libtest's capture, which would hide it in a passing test) and appended to
/// `PYRO_SKIP_LOG` when set, which `make test` lists by test name after the run.
pub fn skip(reason: &str) {
    let test = std::thread::current().name().unwrap_or("an unnamed test").to_string();
    assert!(!under_ci(), "{test}: a prerequisite is missing, and CI allows no skips: {reason}");
    let line = format!("SKIPPED {test}: {reason}\n");
    let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
    if let Some(log) = std::env::var_os("PYRO_SKIP_LOG") {
        let f = std::fs::OpenOptions::new().create(true).append(true).open(log);
        let _ = f.and_then(|mut f| std::io::Write::write_all(&mut f, line.as_bytes()));
    }
}

/// Every file under `dir` (recursively) whose bytes contain `needle`.
pub fn files_containing(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut hits = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else { return hits };
    for e in rd.flatten() {
        let p = e.path();
        let Ok(m) = std::fs::symlink_metadata(&p) else { continue };
        if m.is_dir() {
            hits.extend(files_containing(&p, needle));
        } else if m.is_file() {
            let b = std::fs::read(&p).unwrap_or_default();
            if !needle.is_empty() && b.windows(needle.len()).any(|w| w == needle) {
                hits.push(p.display().to_string());
            }
        }
    }
    hits
}

/// The secrets scan: where `value` shows up among everything pyro wrote (every file under the
/// data dir: the database, its WAL, workspace dirs; and under the runtime dir: VM dirs, serial,
/// supervisor and QEMU logs, state) other than the secret store `<data>/secrets/`, and in the
/// session's results (`results`: every stdout and stderr a test collected). Empty is a pass.
pub fn secret_scan(value: &str, data: &Path, runtime: &Path, results: &[String]) -> Vec<String> {
    let store = data.join("secrets").display().to_string();
    let mut hits: Vec<String> =
        files_containing(data, value.as_bytes()).into_iter().filter(|p| !p.starts_with(&store)).collect();
    hits.extend(files_containing(runtime, value.as_bytes()));
    for (i, r) in results.iter().enumerate() {
        if r.contains(value) {
            hits.push(format!("result #{i}"));
        }
    }
    hits
}

//! Degraded runs on the host, only when the user opts in (`--allow-host-compat`) and no guest
//! can boot. The command runs inside bubblewrap: fresh namespaces (no network), an empty root
//! with only the host's system directories (/usr, /lib, ...) read-only, a minimal /etc (a
//! synthetic passwd and group, plus the few host files programs need to run: alternatives,
//! the dynamic linker's cache, CA certificates, the time zone), a private /tmp, and only a
//! scratch `/workspace` writable. The host's own /etc (users, hostname, configs, keys) stays
//! invisible. Without
//! bubblewrap we refuse: pyro never runs a command unsandboxed.

use crate::error::{Error, Result};
use crate::run::{RunOptions, RunResult};
use crate::session::Cleanup;
use pyro_proto::{Command, HeadTail};
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

pub fn run(o: &RunOptions, why_no_guest: &str) -> Result<RunResult> {
    let bwrap = crate::vm::qemu::which("bwrap").ok_or_else(|| {
        Error::guest(format!(
            "no guest can boot ({why_no_guest}) and bubblewrap is not installed, so host-compat mode is refused"
        ))
        .hint("install bubblewrap (apt-get install bubblewrap) or fix the guest runtime (pyro doctor)")
    })?;
    let started = Instant::now();
    let id = crate::vm::new_id();
    let scratch = std::env::temp_dir().join(format!("pyro-compat-{id}"));
    crate::paths::private_dir(&scratch)?;
    let etc = std::env::temp_dir().join(format!("pyro-compat-{id}.etc"));
    let result = minimal_etc(&etc).and_then(|_| run_in(&bwrap, o, &scratch, &etc, started, id));
    let _ = std::fs::remove_dir_all(&etc);
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

/// Host files under /etc that the sandboxed command may see (read-only, if they exist).
const HOST_ETC: [&str; 8] =
    ["alternatives", "ld.so.cache", "ld.so.conf", "ld.so.conf.d", "ssl", "ca-certificates", "localtime", "mime.types"];

/// A passwd and group naming only root and the running user, so `id` and `whoami` work
/// without the host's account list.
fn minimal_etc(etc: &std::path::Path) -> Result<()> {
    crate::paths::private_dir(etc)?;
    // SAFETY: getuid/getgid have no preconditions.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let mut passwd = String::from("root:x:0:0:root:/root:/bin/sh\n");
    let mut group = String::from("root:x:0:\n");
    if uid != 0 {
        passwd.push_str(&format!("user:x:{uid}:{gid}:user:/workspace:/bin/sh\n"));
    }
    if gid != 0 {
        group.push_str(&format!("user:x:{gid}:\n"));
    }
    passwd.push_str("nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n");
    group.push_str("nogroup:x:65534:\n");
    let w = |name: &str, text: &str| {
        std::fs::write(etc.join(name), text).map_err(|e| Error::io(format!("writing {}", etc.join(name).display()), e))
    };
    w("passwd", &passwd)?;
    w("group", &group)
}

fn run_in(
    bwrap: &std::path::Path,
    o: &RunOptions,
    scratch: &std::path::Path,
    etc: &std::path::Path,
    started: Instant,
    id: String,
) -> Result<RunResult> {
    let mut cmd = std::process::Command::new(bwrap);
    // An empty root with the host's system directories read-only: home directories and
    // everything else on the host stay invisible.
    cmd.args(["--unshare-all", "--die-with-parent", "--new-session", "--tmpfs", "/"]);
    for dir in ["usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32"] {
        let host = std::path::Path::new("/").join(dir);
        if let Ok(target) = std::fs::read_link(&host) {
            cmd.arg("--symlink").arg(target).arg(&host);
        } else if host.is_dir() {
            cmd.arg("--ro-bind").arg(&host).arg(&host);
        }
    }
    cmd.args(["--tmpfs", "/etc"]);
    for f in ["passwd", "group"] {
        cmd.arg("--ro-bind").arg(etc.join(f)).arg(format!("/etc/{f}"));
    }
    for f in HOST_ETC {
        cmd.arg("--ro-bind-try").arg(format!("/etc/{f}")).arg(format!("/etc/{f}"));
    }
    cmd.args(["--remount-ro", "/etc", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"])
        .arg("--bind")
        .arg(scratch)
        .arg("/workspace")
        .args(["--remount-ro", "/", "--chdir", "/workspace", "--clearenv"])
        .args(["--setenv", "PATH", "/usr/local/bin:/usr/bin:/bin", "--setenv", "HOME", "/workspace"]);
    for (k, v) in &o.env {
        cmd.arg("--setenv").arg(k).arg(v);
    }
    cmd.arg("--");
    match &o.command {
        Command::Argv(v) => cmd.args(v),
        Command::Shell(s) => cmd.args(["/bin/sh", "-c", s]),
    };
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).process_group(0);
    let mut child = cmd.spawn().map_err(|e| Error::guest(format!("cannot start bubblewrap: {e}")))?;
    let cap = o.max_output_bytes.clamp(1024, 1 << 20) as usize;
    let collect = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut h = HeadTail::new(cap);
            let mut buf = vec![0u8; 64 * 1024];
            while let Ok(n) = r.read(&mut buf) {
                if n == 0 {
                    break;
                }
                h.push(&buf[..n]);
            }
            h.finish()
        })
    };
    let out_t = collect(Box::new(child.stdout.take().unwrap()));
    let err_t = collect(Box::new(child.stderr.take().unwrap()));
    let deadline = started + Duration::from_secs(o.timeout_s);
    let pgid = child.id() as i32;
    let mut timed_out = false;
    let status = loop {
        if let Some(s) = child.try_wait().map_err(|e| Error::internal(format!("waiting for bubblewrap: {e}")))? {
            break s;
        }
        if Instant::now() >= deadline && !timed_out {
            timed_out = true;
            // SAFETY: kill takes no pointers; the target is the process group we created.
            unsafe { libc::kill(-pgid, libc::SIGKILL) };
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let (stdout, out_info) = out_t.join().unwrap_or_default();
    let (stderr, err_info) = err_t.join().unwrap_or_default();
    use std::os::unix::process::ExitStatusExt;
    let exit_code = if timed_out { 124 } else { status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0)) };
    Ok(RunResult {
        vm_id: id.clone(),
        environment: o.environment.clone(),
        environment_version: "host".into(),
        command: o.command.display(),
        exit_code,
        timed_out,
        cancelled: false,
        duration_ms: started.elapsed().as_millis() as u64,
        boot_ms: 0,
        started_from: None,
        total_ms: started.elapsed().as_millis() as u64,
        execution_mode: "host_compat".into(),
        accelerator: "none".into(),
        stdout,
        stderr,
        stdout_truncated: out_info.truncated,
        stderr_truncated: err_info.truncated,
        stdout_total_bytes: out_info.total_bytes,
        stderr_total_bytes: err_info.total_bytes,
        cleanup: Cleanup { vm_id: id, deleted: true, reason: "host-compat scratch directory removed".into() },
    })
}

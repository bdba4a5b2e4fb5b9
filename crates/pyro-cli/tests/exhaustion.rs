//! The guest agent out of file descriptors, against a real VM: a command in the guest lowers
//! the agent's (PID 1's) `RLIMIT_NOFILE` to 3 with util-linux's `prlimit`, so every new
//! descriptor the agent needs fails with EMFILE. The exec made then fails with one `error:`
//! line (`limit_exceeded`, exit 8, naming the cause; no panic, no `internal`), and once the
//! limit is back the very next exec works in the same boot: nothing was poisoned, no restart.
//!
//! Ordering without sleeps on the host: a watcher in the guest puts the limit back once the
//! agent has read the padded exec request (its `rchar` in `/proc/1/io` grows by more than the
//! padding) and answered it, then writes a marker to the serial console, which the test
//! waits for in `serial.log` before the next exec. The watcher also gives up after 180 s, so
//! a failing test never leaves a guest without descriptors.

use crate::common::*;
use std::time::{Duration, Instant};

/// The watcher: `$1` is the agent's `rchar` before the limit went down, `$2` its soft limit.
/// (Run with `sh -c '...'`: no single quotes in here.)
const WATCHER: &str = r#"
i=0
while [ $i -lt 1800 ]; do
    r=$(sed -n "s/^rchar: //p" /proc/1/io)
    [ $((r - $1)) -ge 4000 ] && break
    sleep 0.1
    i=$((i + 1))
done
# The agent answers an exec it cannot start at once, on the thread that read it.
sleep 2
prlimit --pid 1 --nofile="$2":
echo PYRO-FDS-RESTORED > /dev/ttyS0
"#;

#[test]
fn out_of_fds_exec_fails_with_one_line_and_the_next_exec_works() {
    let t = Env::new();
    let w = Ws::new(&t);
    let id = w.ok(&["workspace", "create", "debian:12", "--name", "fds", "--json"])["id"].as_str().unwrap().to_string();
    let serial = t.runtime.path().join("vms").join(&id).join("serial.log");
    let boot_id = w.sh(&id, "cat /proc/sys/kernel/random/boot_id");
    assert_eq!(boot_id.trim().len(), 36, "{boot_id:?}");

    // Descriptors 0-2 are the agent's console, so a limit of 3 leaves it no room at all.
    let lower = format!(
        r#"set -e
command -v prlimit >/dev/null || {{ echo "util-linux prlimit is missing" >&2; exit 3; }}
for fd in 0 1 2; do [ -e /proc/1/fd/$fd ] || {{ echo "the agent has no fd $fd" >&2; exit 4; }}; done
soft=$(awk '/^Max open files/ {{print $4}}' /proc/1/limits)
r0=$(awk '/^rchar/ {{print $2}}' /proc/1/io)
prlimit --pid 1 --nofile=3:
setsid sh -c '{WATCHER}' watcher "$r0" "$soft" </dev/null >/dev/null 2>&1 &
echo lowered"#
    );
    let o = w.run(&["workspace", "exec", &id, "--timeout-seconds", "120", "--", &lower]);
    assert_eq!((o.status.code(), stdout(&o).trim()), (Some(0), "lowered"), "{}", stderr(&o));

    // The padding makes this request the one the watcher waits for.
    let pad = "x".repeat(8000);
    let (rc, err) = w.fails(&["workspace", "exec", &id, "--", "echo", &pad]);
    assert_eq!(rc, 8, "limit_exceeded: {err}");
    let line = err.lines().find(|l| l.starts_with("error:")).unwrap();
    assert!(line.contains("out of file descriptors") && line.contains("Too many open files"), "{line}");
    assert!(!line.contains("internal") && !line.contains("failed while handling"), "{line}");

    let until = Instant::now() + Duration::from_secs(240);
    while !std::fs::read_to_string(&serial).unwrap_or_default().contains("PYRO-FDS-RESTORED") {
        assert!(Instant::now() < until, "the watcher never restored the limit");
        std::thread::sleep(Duration::from_millis(200));
    }

    // The very next exec works, in the same boot, and so do shells (the reaper's other users).
    let o = w.run(&["workspace", "exec", &id, "--", "cat /proc/sys/kernel/random/boot_id; echo ok"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), format!("{}ok\n", boot_id), "the VM restarted");
    let o = w.run(&["workspace", "shell", "open", &id, "--id-only"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let shell = stdout(&o).trim().to_string();
    w.ok(&["workspace", "shell", "close", &id, &shell, "--json"]);
    assert_eq!(w.sh(&id, "echo again"), "again\n");

    w.ok(&["workspace", "delete", &id, "--json"]);
    t.assert_clean();
}

//! `pyro workspace shell ...` against real VMs: a PTY whose size `stty` agrees with (and
//! changes with a resize, with SIGWINCH), plain reads that wait for quiet and end at the
//! prompt, Ctrl-C (`signal INT`) interrupting a foreground job, paging by cursor with dropped
//! output counted, binary garbage, every call a separate `pyro` process, and refusals.

use crate::common::*;
use serde_json::Value;
use std::time::{Duration, Instant};

struct Sh<'a> {
    w: &'a Ws<'a>,
    id: String,
    shell: String,
}

impl Sh<'_> {
    fn write(&self, input: &str) {
        self.w.ok(&["workspace", "shell", "write", &self.id, &self.shell, "--input", input, "--json"]);
    }
    /// Plain output from `cursor` once the shell was quiet for 700 ms.
    fn read(&self, cursor: u64) -> Value {
        let c = cursor.to_string();
        self.w.ok(&[
            "workspace",
            "shell",
            "read",
            &self.id,
            &self.shell,
            "--cursor",
            &c,
            "--plain",
            "--wait-for-idle-ms",
            "700",
            "--json",
        ])
    }
    /// The shell's output so far, in bytes: a cursor to read from.
    fn cursor(&self) -> u64 {
        self.w.ok(&["workspace", "shell", "list", &self.id, "--json"])["shells"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["shell_id"] == self.shell.as_str())
            .unwrap()["output_bytes"]
            .as_u64()
            .unwrap()
    }
    /// Read from `cursor` until `needle` shows up (bounded); the text read.
    fn read_until(&self, mut cursor: u64, needle: &str, after: &str) -> String {
        let mut text = String::new();
        let until = Instant::now() + Duration::from_secs(60);
        while Instant::now() < until {
            let r = self.read(cursor);
            text.push_str(r["output"].as_str().unwrap());
            cursor = r["next_cursor"].as_u64().unwrap();
            if text.contains(needle) {
                return text;
            }
        }
        panic!("{needle:?} never showed up after {after}: {text:?}");
    }
    /// Write a line, then read until `needle` shows up (bounded); the text read.
    fn run(&self, input: &str, needle: &str) -> String {
        let start = self.cursor();
        self.write(input);
        self.read_until(start, needle, &format!("{input:?}"))
    }
}

#[test]
fn pty_shells_size_idle_signals_paging_and_refusals() {
    let t = Env::new();
    let w = Ws::new(&t);
    let id =
        w.ok(&["workspace", "create", "debian:12", "--name", "shells", "--json"])["id"].as_str().unwrap().to_string();
    let o = w.run(&["workspace", "shell", "open", &id, "--cols", "100", "--rows", "40", "--id-only"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let shell = stdout(&o).trim().to_string();
    assert!(shell.starts_with("shell-"), "{shell}");
    let sh = Sh { w: &w, id: id.clone(), shell: shell.clone() };

    // The terminal size is the one asked for; a resize changes it and the job gets SIGWINCH.
    let out = sh.run("stty size", "40 100");
    // The read waited for quiet: it ends at the prompt.
    assert!(out.trim_end().ends_with('#'), "{out:?}");
    // The job says when its trap is set (`trap-$((6*7))` prints trap-42, which its echoed
    // command line does not contain); the output is read from before the resize, so a quick
    // `got-winch` is not missed.
    sh.run("sh -c 'trap \"echo got-winch; exit 0\" WINCH; echo trap-$((6*7)); while :; do sleep 0.1; done'", "trap-42");
    let before = sh.cursor();
    let r = w.ok(&["workspace", "shell", "resize", &id, &shell, "--cols", "132", "--rows", "50", "--json"]);
    assert_eq!((r["cols"].as_u64(), r["rows"].as_u64()), (Some(132), Some(50)), "{r}");
    sh.read_until(before, "got-winch", "the resize");
    sh.run("stty size", "50 132");

    // Ctrl-C: `signal INT` ends a foreground `sleep 100` at once; the shell lives on.
    sh.write("sleep 100");
    std::thread::sleep(Duration::from_millis(800));
    let t0 = Instant::now();
    w.ok(&["workspace", "shell", "signal", &id, &shell, "--signal", "INT", "--json"]);
    let out = sh.run("echo rc=$?", "rc=130");
    assert!(t0.elapsed() < Duration::from_secs(30), "{:?}: {out:?}", t0.elapsed());

    // Binary garbage is shown, not fatal; plain output carries no escape characters.
    let out = sh.run("head -c 3000 /dev/urandom; echo; echo garbage-done", "garbage-done");
    assert!(!out.contains('\u{1b}'), "escape left in plain output");

    // More than the 1 MiB ring: reading from 0 says what was dropped; paging by cursor works.
    sh.run("seq 1 250000; echo seq-done", "seq-done");
    let r = w.ok(&["workspace", "shell", "read", &id, &shell, "--max-chars", "1000", "--json"]);
    assert!(r["dropped_bytes"].as_u64().unwrap() > 0, "{}", r["dropped_bytes"]);
    assert_eq!(r["more"], true);
    let next = r["next_cursor"].as_u64().unwrap();
    assert_eq!(next - r["cursor"].as_u64().unwrap(), 1000);
    let c = next.to_string();
    let r2 = w.ok(&["workspace", "shell", "read", &id, &shell, "--cursor", &c, "--max-chars", "10", "--json"]);
    assert_eq!(r2["cursor"].as_u64(), Some(next));
    assert_eq!(r2["dropped_bytes"], 0);

    // Listed; refusals change nothing.
    let l = w.ok(&["workspace", "shell", "list", &id, "--json"]);
    assert_eq!(l["count"], 1, "{l}");
    assert_eq!(w.fails(&["workspace", "shell", "open", &id, "--cols", "5"]).0, 2);
    assert_eq!(w.fails(&["workspace", "shell", "read", &id, "shell-999"]).0, 3);
    assert_eq!(w.fails(&["workspace", "shell", "read", &id, "../etc"]).0, 2);
    assert_eq!(w.fails(&["workspace", "shell", "signal", &id, &shell, "--signal", "USR1"]).0, 2);
    let big = "x".repeat(70_000);
    assert_eq!(w.fails(&["workspace", "shell", "write", &id, &shell, "--input", &big]).0, 8);
    assert_eq!(w.ok(&["workspace", "shell", "list", &id, "--json"])["count"], 1);

    // Close: the shell and what it started are gone (read from the guest's /proc, seen there
    // before the close so the check is known to fail while it runs); the summary saw it open
    // and close.
    let sleeps = |w: &Ws| w.guest_processes_where(&id, |p| p.argv == ["sleep", "300"]);
    sh.run("sleep 300 & echo bg-$((6*7))", "bg-42");
    let until = Instant::now() + Duration::from_secs(30);
    while sleeps(&w).is_empty() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(sleeps(&w).len(), 1, "the shell's background sleep is not in /proc: {:?}", w.guest_processes(&id));
    let c = w.ok(&["workspace", "shell", "close", &id, &shell, "--json"]);
    assert_eq!(c["alive"], false, "{c}");
    assert_eq!(w.ok(&["workspace", "shell", "list", &id, "--json"])["count"], 0);
    let left = sleeps(&w);
    assert!(left.is_empty(), "what the shell started is still running: {left:?}");
    assert_eq!(w.fails(&["workspace", "shell", "close", &id, &shell]).0, 3);
    let s = w.ok(&["workspace", "summary", &id, "--json"]);
    assert_eq!(s["shells"]["opened"], 1, "{s}");
    assert_eq!(s["shells"]["closed"], 1, "{s}");
    w.ok(&["workspace", "delete", &id, "--json"]);
    t.assert_clean();
}

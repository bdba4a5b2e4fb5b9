//! Interactive shells in a workspace: `workspace shell open|read|write|signal|resize|list|close`.
//!
//! The shells live in the guest agent (see pyro-guest's `shell.rs`), so they outlive the CLI
//! call or MCP server that opened them and any number of host processes can read and write the
//! same shell. This module validates what a user or model asks, talks to the agent, turns
//! output into text (optionally plain: terminal control sequences stripped) and records
//! open/close events for the summary.

use super::base::Workspaces;
use super::event::WorkspaceEvent;
use crate::error::{in_range, Error, Result};
use pyro_proto::{Reply, Request};
use schemars::JsonSchema;
use serde::Serialize;
use std::time::Duration;

pub const DEFAULT_COLS: u16 = 120;
pub const DEFAULT_ROWS: u16 = 30;
/// A read returns at most this much output (and by default this much).
pub const MAX_READ_CHARS: u64 = 1 << 20;
pub const DEFAULT_READ_CHARS: u64 = 64 * 1024;
/// Input written at once.
pub const MAX_INPUT: usize = 64 * 1024;
/// The longest quiet time a read can wait for, and the longest it waits in all.
pub const MAX_IDLE_MS: u64 = 60_000;
const MAX_READ_WAIT_MS: u64 = 60_000;

/// `shell open` options.
#[derive(Debug, Clone)]
pub struct ShellOptions {
    /// Working directory in the guest (default /workspace).
    pub cwd: Option<String>,
    /// The PTY's width in columns.
    pub cols: u16,
    /// The PTY's height in rows.
    pub rows: u16,
    /// Extra environment variables for the shell.
    pub env: Vec<(String, String)>,
    /// Workspace secrets to put in the shell's environment (`SECRET[=ENV]`).
    pub secret_env: Vec<crate::SecretEnv>,
}

impl Default for ShellOptions {
    fn default() -> Self {
        ShellOptions { cwd: None, cols: DEFAULT_COLS, rows: DEFAULT_ROWS, env: Vec::new(), secret_env: Vec::new() }
    }
}

/// `shell read` options.
#[derive(Debug, Clone, Default)]
pub struct ShellReadOptions {
    /// Output position to read from (bytes since the shell opened); default 0, the oldest kept.
    pub cursor: u64,
    /// At most this much output (default 64 KiB, 1..=1 MiB).
    pub max_chars: Option<u64>,
    /// Strip terminal control sequences and carriage returns.
    pub plain: bool,
    /// First wait until the shell has printed nothing for this long (0..=60000 ms).
    pub wait_for_idle_ms: u64,
}

/// A shell as `open`, `write`, `signal`, `resize`, `list` and `close` report it.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ShellInfo {
    /// The workspace (its id).
    pub workspace_id: String,
    /// The shell's id (`shell-N`).
    pub shell_id: String,
    /// The shell's working directory when it opened.
    pub cwd: String,
    /// The PTY's width in columns.
    pub cols: u16,
    /// The PTY's height in rows.
    pub rows: u16,
    /// The shell is still running.
    pub alive: bool,
    /// How the shell exited; absent while it runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Output written so far: the cursor after the newest byte.
    pub output_bytes: u64,
    /// Milliseconds since it opened.
    pub age_ms: u64,
}

/// `shell list`.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ShellList {
    /// The workspace (its id).
    pub workspace_id: String,
    /// How many shells are listed.
    pub count: usize,
    /// The workspace's shells.
    pub shells: Vec<ShellInfo>,
}

/// `shell read`: a page of output and where to go on from.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ShellRead {
    /// The workspace (its id).
    pub workspace_id: String,
    /// The shell's id.
    pub shell_id: String,
    /// The output read, as text (control sequences stripped with `plain`).
    pub output: String,
    /// Where `output` starts.
    pub cursor: u64,
    /// Pass this as `cursor` to read on.
    pub next_cursor: u64,
    /// More output is there after `next_cursor` (read again at once).
    pub more: bool,
    /// Output between the cursor asked for and `cursor` that was dropped from the shell's ring.
    pub dropped_bytes: u64,
    /// The shell had been quiet for `wait_for_idle_ms` when the read returned.
    pub idle: bool,
    /// The shell is still running.
    pub alive: bool,
    /// How the shell exited; absent while it runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Control sequences were stripped from `output`.
    pub plain: bool,
}

/// Shell ids are the guest's `shell-N`.
fn check_shell_id(id: &str) -> Result<()> {
    let ok = id
        .strip_prefix("shell-")
        .is_some_and(|n| !n.is_empty() && n.len() <= 10 && n.bytes().all(|b| b.is_ascii_digit()));
    if !ok {
        return Err(Error::invalid(format!("invalid shell id '{}'", crate::text::clip(id, 40)))
            .hint("shell ids look like shell-1; `workspace shell list ID` shows them"));
    }
    Ok(())
}

/// `INT`, `SIGINT` or a number, to a signal the agent accepts.
pub fn parse_signal(s: &str) -> Result<i32> {
    let name = s.trim().to_ascii_uppercase();
    let name = name.strip_prefix("SIG").unwrap_or(&name);
    Ok(match name {
        "INT" | "2" => libc::SIGINT,
        "TERM" | "15" => libc::SIGTERM,
        "HUP" | "1" => libc::SIGHUP,
        "KILL" | "9" => libc::SIGKILL,
        "QUIT" | "3" => libc::SIGQUIT,
        _ => {
            return Err(Error::invalid(format!("unknown signal '{}'", crate::text::clip(s, 20)))
                .hint("one of INT, TERM, HUP, KILL, QUIT"))
        }
    })
}

/// Terminal output as plain text: escape sequences (colours, cursor moves, titles) removed,
/// CRLF as LF, other control characters but tab and newline dropped.
pub fn plain_text(raw: &[u8]) -> String {
    let stripped = strip_ansi_escapes::strip(raw);
    let text = String::from_utf8_lossy(&stripped).replace("\r\n", "\n");
    text.chars().filter(|c| !c.is_control() || *c == '\n' || *c == '\t').collect()
}

/// How many bytes of `b` end in a complete UTF-8 character: a read never splits one (the
/// rest comes with the next read).
fn complete_utf8(b: &[u8]) -> usize {
    match std::str::from_utf8(b) {
        Ok(_) => b.len(),
        Err(e) if e.error_len().is_none() => e.valid_up_to(),
        // Invalid bytes in the middle (binary garbage) are kept: lossy conversion shows them.
        Err(_) => b.len(),
    }
}

fn size(cols: u16, rows: u16) -> Result<()> {
    in_range("cols", cols as u64, 10, 1000)?;
    in_range("rows", rows as u64, 2, 500)?;
    Ok(())
}

impl Workspaces<'_> {
    fn shell_info(id: &str, i: pyro_proto::ShellInfo) -> ShellInfo {
        ShellInfo {
            workspace_id: id.to_string(),
            shell_id: i.shell_id,
            cwd: i.cwd,
            cols: i.cols,
            rows: i.rows,
            alive: i.alive,
            exit_code: i.exit_code,
            output_bytes: i.output_bytes,
            age_ms: i.age_ms,
        }
    }

    /// One shell request to the workspace's guest, expecting a `ShellInfo` back.
    fn shell_call(&mut self, key: &str, msg: Request, payload: &[u8]) -> Result<ShellInfo> {
        let r = self.resolve(key)?;
        let (mut c, _) = self.connect(&r)?;
        match c.call_payload(&msg, payload, Duration::ZERO)?.0 {
            Reply::ShellInfo(i) => Ok(Self::shell_info(&r.id, i)),
            _ => Err(Error::guest("the guest sent a malformed reply to a shell request")),
        }
    }

    /// Open a shell on a PTY in the guest. It keeps running until closed (or the VM stops).
    pub fn shell_open(&mut self, key: &str, o: &ShellOptions) -> Result<ShellInfo> {
        size(o.cols, o.rows)?;
        crate::limits::validate_env(&o.env)?;
        let cwd = super::guest_path(o.cwd.as_deref().unwrap_or("/workspace"))?;
        let r = self.resolve(key)?;
        let mut env = o.env.clone();
        env.extend(self.secret_env(&r.id, &o.secret_env)?);
        let msg = Request::ShellOpen { cwd: Some(cwd.clone()), cols: o.cols, rows: o.rows, env };
        let info = self.shell_call(&r.id, msg, &[])?;
        let secrets: Vec<&str> = o.secret_env.iter().map(|s| s.secret.as_str()).collect();
        self.store.event(
            &info.workspace_id,
            &WorkspaceEvent::ShellOpen {
                shell_id: info.shell_id.clone(),
                path: cwd.clone(),
                secrets: secrets.iter().map(|s| s.to_string()).collect(),
            },
        )?;
        Ok(info)
    }

    /// A page of a shell's output from `o.cursor`, after an optional wait for quiet.
    pub fn shell_read(&mut self, key: &str, shell: &str, o: &ShellReadOptions) -> Result<ShellRead> {
        check_shell_id(shell)?;
        let max = in_range("max_chars", o.max_chars.unwrap_or(DEFAULT_READ_CHARS), 1, MAX_READ_CHARS)?;
        let idle = in_range("wait_for_idle_ms", o.wait_for_idle_ms, 0, MAX_IDLE_MS)?;
        let wait = (idle + 30_000).min(MAX_READ_WAIT_MS);
        let r = self.resolve(key)?;
        let (mut c, _) = self.connect(&r)?;
        let msg =
            Request::ShellRead { shell: shell.into(), cursor: o.cursor, max_bytes: max, idle_ms: idle, wait_ms: wait };
        let (reply, mut data) = c.call_payload(&msg, &[], Duration::from_millis(wait))?;
        let Reply::ShellData { cursor, next_cursor, end, dropped, idle, alive, exit_code } = reply else {
            return Err(Error::guest("the guest sent a malformed reply to a shell read"));
        };
        if data.len() as u64 > max || next_cursor.checked_sub(cursor) != Some(data.len() as u64) || end < next_cursor {
            return Err(Error::guest("the guest sent a malformed reply to a shell read"));
        }
        let keep = complete_utf8(&data);
        data.truncate(keep);
        let next_cursor = cursor + keep as u64;
        // Secrets the shell printed are replaced before the text leaves the SDK (a value cut
        // by the page boundary is not caught: read with larger pages around it).
        let redactor = self.redactor(&r.id)?;
        let data = redactor.redact(&data);
        let output = if o.plain { plain_text(&data) } else { String::from_utf8_lossy(&data).into_owned() };
        let output = redactor.redact_str(&output);
        Ok(ShellRead {
            workspace_id: r.id,
            shell_id: shell.into(),
            output,
            cursor,
            next_cursor,
            more: next_cursor < end,
            dropped_bytes: dropped,
            idle,
            alive,
            exit_code,
            plain: o.plain,
        })
    }

    /// Type `input` into the shell (a newline is added unless `newline` is false).
    pub fn shell_write(&mut self, key: &str, shell: &str, input: &str, newline: bool) -> Result<ShellInfo> {
        check_shell_id(shell)?;
        let mut bytes = input.as_bytes().to_vec();
        if newline {
            bytes.push(b'\n');
        }
        if bytes.len() > MAX_INPUT {
            return Err(Error::limit(format!("input is {} bytes; at most {MAX_INPUT} at once", bytes.len()))
                .hint("write a script into the workspace and run that"));
        }
        self.shell_call(key, Request::ShellWrite { shell: shell.into() }, &bytes)
    }

    /// Send a signal (INT, TERM, HUP, KILL, QUIT) to the shell's foreground job.
    pub fn shell_signal(&mut self, key: &str, shell: &str, signal: &str) -> Result<ShellInfo> {
        check_shell_id(shell)?;
        let signal = parse_signal(signal)?;
        self.shell_call(key, Request::ShellSignal { shell: shell.into(), signal }, &[])
    }

    /// Change the terminal size (the foreground job gets SIGWINCH).
    pub fn shell_resize(&mut self, key: &str, shell: &str, cols: u16, rows: u16) -> Result<ShellInfo> {
        check_shell_id(shell)?;
        size(cols, rows)?;
        self.shell_call(key, Request::ShellResize { shell: shell.into(), cols, rows }, &[])
    }

    /// The workspace's open shells, oldest first.
    pub fn shell_list(&mut self, key: &str) -> Result<ShellList> {
        let r = self.resolve(key)?;
        let (mut c, _) = self.connect(&r)?;
        let Reply::ShellListReply { shells } = c.call(&Request::ShellList)? else {
            return Err(Error::guest("the guest sent a malformed reply to a shell list"));
        };
        let shells: Vec<ShellInfo> = shells.into_iter().map(|i| Self::shell_info(&r.id, i)).collect();
        Ok(ShellList { workspace_id: r.id, count: shells.len(), shells })
    }

    /// Hang the shell up and forget it; everything it started goes too.
    pub fn shell_close(&mut self, key: &str, shell: &str) -> Result<ShellInfo> {
        check_shell_id(shell)?;
        let info = self.shell_call(key, Request::ShellClose { shell: shell.into() }, &[])?;
        self.store.event(
            &info.workspace_id,
            &WorkspaceEvent::ShellClose { shell_id: info.shell_id.clone(), exit_code: info.exit_code },
        )?;
        Ok(info)
    }

    /// Open shells for the summary, when the VM is running (never boots it).
    pub(crate) fn shells_if_running(&mut self, id: &str) -> Vec<ShellInfo> {
        let sock = super::base::vm_dir(self.paths(), id).join("supervisor.sock");
        let Ok(mut c) = crate::vm::client::Client::connect(&sock) else { return Vec::new() };
        match c.call(&Request::ShellList) {
            Ok(Reply::ShellListReply { shells }) => shells.into_iter().map(|i| Self::shell_info(id, i)).collect(),
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_strips_escapes_and_carriage_returns() {
        let raw = b"\x1b]0;title\x07\x1b[1;32mroot@pyro\x1b[0m:/workspace# ls\r\na.txt\r\n\x07done\x1b[K\r\n";
        assert_eq!(plain_text(raw), "root@pyro:/workspace# ls\na.txt\ndone\n");
    }

    #[test]
    fn reads_never_split_a_character() {
        let s = "héllo".as_bytes();
        assert_eq!(complete_utf8(&s[..2]), 1);
        assert_eq!(complete_utf8(s), s.len());
        assert_eq!(complete_utf8(b"\xff\xfeok"), 4);
    }

    #[test]
    fn ids_and_signals_are_checked() {
        assert!(check_shell_id("shell-12").is_ok());
        for bad in ["shell-", "shell-x", "../x", "", "shell-12345678901"] {
            assert!(check_shell_id(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_signal("int").unwrap(), libc::SIGINT);
        assert_eq!(parse_signal("SIGKILL").unwrap(), libc::SIGKILL);
        assert!(parse_signal("USR1").is_err());
    }
}

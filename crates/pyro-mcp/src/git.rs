//! Running the host's `git` with the defaults every caller needs: it never reads our stdin (the
//! MCP server's stdin is the session), never stops to ask for credentials, and never starts the
//! file system monitor (a repository can configure it to run any command).

use std::path::Path;
use std::process::{Command, Stdio};

/// `git` with the shared defaults; callers add their arguments.
pub(crate) fn command() -> Command {
    build(false)
}

/// `git -C dir` with the shared defaults and none of the caller's `GIT_*` variables (GIT_DIR
/// & co. would point git at another repository than the one in `dir`).
pub(crate) fn command_in(dir: &Path) -> Command {
    let mut c = build(true);
    c.arg("-C").arg(dir);
    c
}

fn build(clear_git_env: bool) -> Command {
    let mut c = Command::new("git");
    if clear_git_env {
        // Before our own GIT_ settings below, which must survive.
        for (key, _) in std::env::vars_os() {
            if key.as_encoded_bytes().starts_with(b"GIT_") {
                c.env_remove(&key);
            }
        }
    }
    c.stdin(Stdio::null());
    c.env("GIT_TERMINAL_PROMPT", "0").env("GIT_ASKPASS", "true").env("SSH_ASKPASS", "true");
    c.args(["-c", "core.fsmonitor=false"]);
    c
}

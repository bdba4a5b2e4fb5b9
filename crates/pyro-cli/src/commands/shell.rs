//! `pyro workspace shell open|read|write|signal|resize|list|close`: interactive shells on a
//! PTY in the guest. The guest owns them, so they outlive this process: any later `pyro` call
//! (or an MCP server) reads and writes the same shell.

use crate::render;
use pyro_mcp::types::{ShellOptions, ShellReadOptions};
use pyro_mcp::{Error, Workspaces};
use std::io::Write;

#[derive(clap::Subcommand)]
pub enum ShellCmd {
    /// Open a shell on a PTY in the guest (it runs until closed)
    Open {
        id: String,
        /// Working directory (default /workspace)
        #[arg(long)]
        cwd: Option<String>,
        #[arg(long, default_value_t = 120)]
        cols: u16,
        #[arg(long, default_value_t = 30)]
        rows: u16,
        /// Put a workspace secret in the shell's environment (repeatable)
        #[arg(long = "secret-env", value_name = "SECRET[=ENV]")]
        secret_env: Vec<String>,
        /// Print only the new shell's id
        #[arg(long, conflicts_with = "json")]
        id_only: bool,
    },
    /// Read output from a cursor (bytes since the shell opened)
    Read {
        id: String,
        shell: String,
        #[arg(long, default_value_t = 0)]
        cursor: u64,
        /// At most this much output (1..=1048576, default 65536)
        #[arg(long)]
        max_chars: Option<u64>,
        /// Strip terminal control sequences
        #[arg(long)]
        plain: bool,
        /// First wait until the shell has printed nothing for this long (0..=60000)
        #[arg(long, default_value_t = 0)]
        wait_for_idle_ms: u64,
    },
    /// Type input into the shell (a newline is added unless --no-newline)
    Write {
        id: String,
        shell: String,
        #[arg(long)]
        input: String,
        #[arg(long)]
        no_newline: bool,
    },
    /// Send a signal to the shell's foreground job (INT, TERM, HUP, KILL, QUIT)
    Signal {
        id: String,
        shell: String,
        #[arg(long, default_value = "INT")]
        signal: String,
    },
    /// Change the terminal size (the foreground job gets SIGWINCH)
    Resize {
        id: String,
        shell: String,
        #[arg(long)]
        cols: u16,
        #[arg(long)]
        rows: u16,
    },
    /// The workspace's open shells
    List { id: String },
    /// Hang the shell up; everything it started goes too
    Close { id: String, shell: String },
}

pub fn run(ws: &mut Workspaces<'_>, c: ShellCmd, json: bool) -> Result<i32, Error> {
    match c {
        ShellCmd::Open { id, cwd, cols, rows, secret_env, id_only } => {
            let secret_env = secret_env.iter().map(|s| pyro_mcp::SecretEnv::parse(s)).collect::<Result<_, _>>()?;
            let s = ws.shell_open(&id, &ShellOptions { cwd, cols, rows, env: Vec::new(), secret_env })?;
            render::show_or_id(&s, &s.shell_id, id_only, json);
        }
        ShellCmd::Read { id, shell, cursor, max_chars, plain, wait_for_idle_ms } => {
            let r = ws.shell_read(&id, &shell, &ShellReadOptions { cursor, max_chars, plain, wait_for_idle_ms })?;
            if json {
                render::json(&r);
            } else {
                let _ = std::io::stdout().write_all(r.output.as_bytes());
                let _ = std::io::stdout().flush();
                eprintln!("[shell-read] {}", r.status_line());
            }
        }
        ShellCmd::Write { id, shell, input, no_newline } => {
            render::show(&ws.shell_write(&id, &shell, &input, !no_newline)?, json)
        }
        ShellCmd::Signal { id, shell, signal } => render::show(&ws.shell_signal(&id, &shell, &signal)?, json),
        ShellCmd::Resize { id, shell, cols, rows } => render::show(&ws.shell_resize(&id, &shell, cols, rows)?, json),
        ShellCmd::List { id } => render::show(&ws.shell_list(&id)?, json),
        ShellCmd::Close { id, shell } => render::show(&ws.shell_close(&id, &shell)?, json),
    }
    Ok(0)
}

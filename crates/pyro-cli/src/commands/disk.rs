//! `pyro workspace disk ...`: read a stopped workspace's whole disk without booting it, each
//! subcommand one SDK call, rendered.

use crate::render;
use pyro_mcp::{Error, Workspaces};
use std::io::Write;
use std::path::PathBuf;

#[derive(clap::Subcommand)]
pub enum DiskCmd {
    /// List the disk of a stopped workspace (PATH absolute, or relative to /workspace)
    List {
        id: String,
        path: Option<String>,
        #[arg(long)]
        recursive: bool,
    },
    /// Read a file from the disk of a stopped workspace
    Read {
        id: String,
        path: String,
        /// At most this many bytes (default 65536, at most 1 MiB)
        #[arg(long)]
        max_bytes: Option<u64>,
        /// Start this many bytes into the file
        #[arg(long, default_value_t = 0)]
        offset: u64,
        /// Print only the content
        #[arg(long, conflicts_with = "json")]
        content_only: bool,
    },
    /// Write the disk of a stopped workspace to a new raw ext4 image
    Export {
        id: String,
        #[arg(long)]
        output: PathBuf,
    },
}

pub fn run(ws: &mut Workspaces<'_>, c: DiskCmd, json: bool) -> Result<i32, Error> {
    match c {
        DiskCmd::List { id, path, recursive } => render::show(&ws.disk_list(&id, path.as_deref(), recursive)?, json),
        DiskCmd::Read { id, path, max_bytes, offset, content_only } => {
            let r = ws.disk_read(&id, &path, offset, max_bytes)?;
            if json {
                render::json(&r);
            } else {
                let _ = std::io::stdout().write_all(&r.content);
                if !content_only {
                    eprintln!("[disk-read] {}", r.status_line());
                }
            }
        }
        DiskCmd::Export { id, output } => render::show(&ws.disk_export(&id, &output)?, json),
    }
    Ok(0)
}

//! `pyro ui`: the review page on loopback. Options in, the URL (with its token) out, then
//! `pyro_mcp::ui::serve_ui` serves until Ctrl-C.

use crate::render;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// Where to serve (a loopback address; port 0 picks a free one)
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Open the page in the browser (xdg-open)
    #[arg(long)]
    open: bool,
    /// The directory exports from the page may go into (besides a workspace's own seed
    /// directory); default: the git work tree around the current directory, else the directory
    #[arg(long, value_name = "PATH")]
    project_path: Option<PathBuf>,
}

pub fn main(a: Args) -> i32 {
    let project = a.project_path.or_else(|| {
        let cwd = std::env::current_dir().ok()?;
        Some(pyro_mcp::mcp::source::git_toplevel(&cwd).unwrap_or(cwd))
    });
    let pyro = match pyro_mcp::Pyro::new() {
        Ok(p) => p,
        Err(e) => return render::error(&e, false),
    };
    let o = pyro_mcp::ui::UiOptions { listen: a.listen, project, open: a.open };
    match pyro_mcp::ui::serve_ui(pyro, o) {
        Ok(()) => 0,
        Err(e) => render::error(&e, false),
    }
}

//! `pyro workspace snapshot ...`: named snapshots of a workspace's whole guest disk, each
//! subcommand one SDK call, rendered.

use crate::render;
use pyro_mcp::{Error, Workspaces};

#[derive(clap::Subcommand)]
pub enum SnapshotCmd {
    /// Snapshot the whole guest disk under NAME (O(1), consistent, no reboot)
    Create {
        id: String,
        name: String,
        /// Print only the snapshot's name (what `reset --snapshot` and `snapshot delete` take)
        #[arg(long, conflicts_with = "json")]
        id_only: bool,
    },
    /// The baseline, then the snapshots newest first, with created time and size on disk
    List { id: String },
    /// Delete a snapshot (its data stays while later snapshots or the live disk need it)
    Delete { id: String, name: String },
}

pub fn run(ws: &mut Workspaces<'_>, c: SnapshotCmd, json: bool) -> Result<i32, Error> {
    match c {
        SnapshotCmd::Create { id, name, id_only } => {
            let s = ws.snapshot_create(&id, &name)?;
            render::show_or_id(&s, &s.name, id_only, json);
        }
        SnapshotCmd::List { id } => render::show(&ws.snapshot_list(&id)?, json),
        SnapshotCmd::Delete { id, name } => render::show(&ws.snapshot_delete(&id, &name)?, json),
    }
    Ok(0)
}

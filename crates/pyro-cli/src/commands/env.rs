//! `pyro env list|pull`

use crate::render;

#[derive(clap::Subcommand)]
pub enum EnvCmd {
    /// List the catalog and what is installed
    List {
        #[arg(long)]
        json: bool,
    },
    /// Install an environment (builds it from the Debian archive if needed)
    Pull {
        name: String,
        #[arg(long)]
        json: bool,
    },
}

pub fn main(c: EnvCmd) -> i32 {
    match c {
        EnvCmd::List { json } => {
            let pyro = match render::pyro("env", json) {
                Ok(p) => p,
                Err(code) => return code,
            };
            let list = pyro.list_environments();
            if json {
                render::json(&serde_json::json!({"count": list.len(), "environments": list}));
            } else {
                for e in list {
                    let state = match (e.installed, e.size_bytes) {
                        (true, Some(s)) => format!("installed, {} MiB", s >> 20),
                        (true, None) => "installed".into(),
                        _ => "not installed".into(),
                    };
                    println!("{:<16} {:<7} {:<24} {}", e.name, e.version, state, e.description);
                }
            }
            0
        }
        EnvCmd::Pull { name, json } => {
            let pyro = match render::pyro("pull", json) {
                Ok(p) => p,
                Err(code) => return code,
            };
            render::stop_vms_on_signal();
            match pyro.pull_environment(&name) {
                Ok(i) => {
                    if json {
                        render::json(
                            &serde_json::json!({"name": i.name, "version": i.version, "digest": i.digest, "size_bytes": i.size_bytes, "source": i.source, "installed": true}),
                        );
                    } else {
                        println!(
                            "{} {} installed ({} MiB, sha256:{})",
                            i.name,
                            i.version,
                            i.size_bytes >> 20,
                            &i.digest[..16]
                        );
                    }
                    0
                }
                Err(e) => render::error(&e, json),
            }
        }
    }
}

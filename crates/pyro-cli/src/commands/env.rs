//! `pyro env list|pull|inspect|prune`: the catalog, builds and OCI pulls, what an install is
//! made of, and cleaning the cache. Long pulls draw a progress bar on a terminal and print
//! phase lines otherwise (`crate::progress`).

use crate::render;
use pyro_mcp::{PullOptions, PullReport};

#[derive(clap::Subcommand)]
pub enum EnvCmd {
    /// List the catalog and what is installed (OCI images included)
    List,
    /// Install an environment: build a catalog entry from the Debian archive, or pull an OCI
    /// image (REGISTRY/REPO[:TAG|@sha256:DIGEST], e.g. docker.io/library/python:3.12)
    Pull {
        name: String,
        /// Allow plain HTTP (http://REGISTRY/...) to a registry that is not on loopback, and
        /// TLS certificates that do not verify
        #[arg(long)]
        insecure: bool,
        /// Print only the installed environment's name (what `run` and `workspace create` take)
        #[arg(long, conflicts_with = "json")]
        id_only: bool,
    },
    /// Show an environment: source, digests, size, packages, layers, kernel, installs
    Inspect { name: String },
    /// Remove partial, stale and unknown entries from the environment cache (installs a
    /// workspace depends on are kept and reported)
    Prune {
        /// Only report what would be removed
        #[arg(long)]
        dry_run: bool,
    },
}

pub fn main(c: EnvCmd, json: bool) -> i32 {
    match c {
        EnvCmd::List => list(json),
        EnvCmd::Pull { name, insecure, id_only } => pull(&name, insecure, id_only, json),
        EnvCmd::Inspect { name } => inspect(&name, json),
        EnvCmd::Prune { dry_run } => prune(dry_run, json),
    }
}

fn list(json: bool) -> i32 {
    let pyro = match render::pyro("env", json) {
        Ok(p) => p,
        Err(code) => return code,
    };
    render::show(&pyro.list_environments(), json);
    0
}

fn pull(name: &str, insecure: bool, id_only: bool, json: bool) -> i32 {
    let (sink, bar) = crate::progress::bar_or_lines("pull");
    let pyro = match pyro_mcp::Pyro::new() {
        Ok(p) => p.on_progress(move |l| sink(l)),
        Err(e) => return render::error(&e, json),
    };
    render::stop_vms_on_signal();
    let result = pyro.pull_environment_with(name, &PullOptions { insecure });
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    match result {
        Ok(i) => {
            let r = PullReport::from(&i);
            render::show_or_id(&r, &r.name, id_only, json);
            0
        }
        Err(e) => render::error(&e, json),
    }
}

fn inspect(name: &str, json: bool) -> i32 {
    let pyro = match render::pyro("env", json) {
        Ok(p) => p,
        Err(code) => return code,
    };
    match pyro.inspect_environment(name) {
        Ok(d) => {
            render::show(&d, json);
            0
        }
        Err(e) => render::error(&e, json),
    }
}

fn prune(dry_run: bool, json: bool) -> i32 {
    let pyro = match render::pyro("prune", json) {
        Ok(p) => p,
        Err(code) => return code,
    };
    match pyro.prune_environments(dry_run) {
        Ok(r) => {
            render::show(&r, json);
            0
        }
        Err(e) => render::error(&e, json),
    }
}

//! `pyro env list|pull|inspect|prune`: the catalog, builds and OCI pulls, what an install is
//! made of, and cleaning the cache. Long pulls draw a progress bar on a terminal and print
//! phase lines otherwise.

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
        EnvCmd::Pull { name, insecure } => pull(&name, insecure, json),
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

/// Progress for pulls: a bar on a terminal (phase lines above it), else phase lines with the
/// fraction lines thinned to one every few seconds.
type Sink = Box<dyn Fn(&str) + Send + Sync>;

fn progress_sink(tag: &'static str) -> (Sink, Option<indicatif::ProgressBar>) {
    use std::io::IsTerminal;
    if std::io::stderr().is_terminal() {
        let bar = indicatif::ProgressBar::new_spinner();
        let handle = bar.clone();
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        let bytes_style = indicatif::ProgressStyle::with_template(
            "{spinner} {msg:<22} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .unwrap()
        .progress_chars("=> ");
        let phase_style = indicatif::ProgressStyle::with_template("{spinner} {msg}").unwrap();
        let sink = Box::new(move |line: &str| match pyro_mcp::parse_progress(line) {
            Some((phase, done, total)) => {
                let phase = phase.trim_start_matches("env: ").to_string();
                if bar.length() != Some(total) || bar.message() != phase {
                    bar.set_style(bytes_style.clone());
                    bar.set_length(total);
                    bar.set_message(phase);
                }
                bar.set_position(done);
                if done >= total {
                    bar.set_style(phase_style.clone());
                }
            }
            None => {
                bar.set_style(phase_style.clone());
                bar.set_length(0);
                bar.println(format!("[{tag}] {line}"));
                bar.set_message(line.trim_start_matches("env: ").to_string());
            }
        });
        (sink, Some(handle))
    } else {
        let last = std::sync::Mutex::new(None::<std::time::Instant>);
        let sink = Box::new(move |line: &str| {
            if let Some((_, done, total)) = pyro_mcp::parse_progress(line) {
                let mut l = last.lock().unwrap();
                let due = match *l {
                    Some(t) => t.elapsed() >= std::time::Duration::from_secs(3),
                    None => true,
                };
                if !(due || done >= total) {
                    return;
                }
                *l = Some(std::time::Instant::now());
            }
            eprintln!("[{tag}] {line}");
        });
        (sink, None)
    }
}

fn pull(name: &str, insecure: bool, json: bool) -> i32 {
    let (sink, bar) = progress_sink("pull");
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
            render::show(&PullReport::from(&i), json);
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

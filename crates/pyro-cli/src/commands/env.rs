//! `pyro env list|pull|inspect|prune`: the catalog, builds and OCI pulls, what an install is
//! made of, and cleaning the cache. Long pulls draw a progress bar on a terminal and print
//! phase lines otherwise.

use crate::render;
use pyro_mcp::env::{EnvironmentDetails, Installed, PruneReport, PullOptions};

#[derive(clap::Subcommand)]
pub enum EnvCmd {
    /// List the catalog and what is installed (OCI images included)
    List {
        #[arg(long)]
        json: bool,
    },
    /// Install an environment: build a catalog entry from the Debian archive, or pull an OCI
    /// image (REGISTRY/REPO[:TAG|@sha256:DIGEST], e.g. docker.io/library/python:3.12)
    Pull {
        name: String,
        /// Allow plain HTTP (http://REGISTRY/...) to a registry that is not on loopback, and
        /// TLS certificates that do not verify
        #[arg(long)]
        insecure: bool,
        #[arg(long)]
        json: bool,
    },
    /// Show an environment: source, digests, size, packages, layers, kernel, installs
    Inspect {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Remove partial, stale and unknown entries from the environment cache (installs a
    /// workspace depends on are kept and reported)
    Prune {
        /// Only report what would be removed
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        json: bool,
    },
}

pub fn main(c: EnvCmd) -> i32 {
    match c {
        EnvCmd::List { json } => list(json),
        EnvCmd::Pull { name, insecure, json } => pull(&name, insecure, json),
        EnvCmd::Inspect { name, json } => inspect(&name, json),
        EnvCmd::Prune { dry_run, json } => prune(dry_run, json),
    }
}

fn list(json: bool) -> i32 {
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
            println!("{:<16} {:<12} {:<24} {}", e.name, e.version, state, e.description);
        }
    }
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
        let sink = Box::new(move |line: &str| match pyro_mcp::env::parse_progress(line) {
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
            if let Some((_, done, total)) = pyro_mcp::env::parse_progress(line) {
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
            if json {
                render::json(&pull_json(&i));
            } else {
                println!(
                    "{} {} {} ({} MiB, sha256:{})",
                    i.name,
                    i.version,
                    if i.fresh { "installed" } else { "already installed" },
                    i.size_bytes >> 20,
                    &i.digest[..16.min(i.digest.len())]
                );
            }
            0
        }
        Err(e) => render::error(&e, json),
    }
}

fn pull_json(i: &Installed) -> serde_json::Value {
    serde_json::json!({
        "name": i.name, "version": i.version, "kind": i.kind, "digest": i.digest, "size_bytes": i.size_bytes,
        "source": i.source, "installed": true, "built": i.fresh, "path": i.dir,
        "manifest_digest": i.oci.as_ref().map(|o| &o.manifest_digest),
        "index_digest": i.oci.as_ref().and_then(|o| o.index_digest.as_ref()),
    })
}

fn inspect(name: &str, json: bool) -> i32 {
    let pyro = match render::pyro("env", json) {
        Ok(p) => p,
        Err(code) => return code,
    };
    match pyro.inspect_environment(name) {
        Ok(d) => {
            if json {
                render::json(&d);
            } else {
                print_details(&d);
            }
            0
        }
        Err(e) => render::error(&e, json),
    }
}

fn mib(b: u64) -> String {
    if b < 1 << 20 {
        format!("{:.1} KiB", b as f64 / 1024.0)
    } else {
        format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64)
    }
}

/// `YYYY-MM-DD HH:MM:SS UTC` from seconds since the epoch.
fn utc(secs: u64) -> String {
    let days = (secs / 86400) as i64;
    let rem = secs % 86400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC", rem / 3600, rem % 3600 / 60, rem % 60)
}

fn print_details(d: &EnvironmentDetails) {
    let row = |k: &str, v: &str| println!("{k:<14} {v}");
    row("name", &d.name);
    row("kind", &d.kind);
    if let Some(desc) = &d.description {
        row("description", desc);
    }
    if let Some(v) = &d.catalog_version {
        row("catalog", &format!("version {v}; recipe: {}", d.recipe_packages.join(" ")));
    }
    match &d.current {
        None => row("installed", "no"),
        Some(i) => {
            row("installed", &format!("yes, {}", utc(i.installed_at)));
            row("version", &i.version);
            row("digest", &format!("sha256:{}", i.digest));
            row("source", &i.source);
            row("size", &format!("{} on disk (sparse ext4 base)", mib(i.size_bytes)));
            row("path", &i.dir.display().to_string());
            if let Some(k) = &i.kernel {
                row("built with", k);
            }
            if let Some(o) = &i.oci {
                row("manifest", &o.manifest_digest);
                if let Some(x) = &o.index_digest {
                    row("index", &format!("{x} (resolved to {})", o.platform));
                }
                row("config", &o.config_digest);
                if let Some(c) = &o.created {
                    row("created", c);
                }
                row("layers", &o.layers.len().to_string());
                for (n, l) in o.layers.iter().enumerate() {
                    println!("{:<14}   {}. {} {} {}", "", n + 1, l.digest, mib(l.size), l.media_type);
                }
                let c = &o.config;
                let mut parts = Vec::new();
                if !c.env.is_empty() {
                    parts.push(format!("Env={}", c.env.join(" ")));
                }
                if let Some(w) = &c.working_dir {
                    parts.push(format!("WorkingDir={w}"));
                }
                if let Some(u) = &c.user {
                    parts.push(format!("User={u}"));
                }
                if let Some(e) = &c.entrypoint {
                    parts.push(format!("Entrypoint={e:?}"));
                }
                if let Some(e) = &c.cmd {
                    parts.push(format!("Cmd={e:?}"));
                }
                row("image config", &if parts.is_empty() { "(empty)".into() } else { parts.join("; ") });
                row("", "recorded only: commands run as root in /workspace with pyro's PATH");
            }
            row("packages", &i.packages.len().to_string());
            for chunk in i.packages.chunks(4) {
                println!("{:<14}   {}", "", chunk.join("  "));
            }
        }
    }
    if let Some(k) = &d.kernel {
        row("kernel", &format!("{k} (shared by every environment)"));
    }
    if !d.installs.is_empty() {
        row("installs", &d.installs.len().to_string());
        for i in &d.installs {
            let mut note = vec![utc(i.installed_at), mib(i.size_bytes)];
            if i.current {
                note.push("current".into());
            }
            if !i.used_by.is_empty() {
                note.push(format!("used by {}", i.used_by.join(", ")));
            }
            println!("{:<14}   {} {} ({})", "", i.version, i.path, note.join(", "));
        }
    }
}

fn prune(dry_run: bool, json: bool) -> i32 {
    let pyro = match render::pyro("prune", json) {
        Ok(p) => p,
        Err(code) => return code,
    };
    match pyro.prune_environments(dry_run) {
        Ok(r) => {
            if json {
                render::json(&r);
            } else {
                print_prune(&r);
            }
            0
        }
        Err(e) => render::error(&e, json),
    }
}

fn print_prune(r: &PruneReport) {
    let verb = if r.dry_run { "would remove" } else { "removed" };
    for e in &r.removed {
        println!("{verb:<12} {} ({}, {})", e.path, e.reason, mib(e.size_bytes));
    }
    for e in &r.kept_in_use {
        println!("{:<12} {} ({}; used by {})", "kept", e.path, e.reason, e.used_by.join(", "));
    }
    for e in &r.skipped_busy {
        println!("{:<12} {e} (a pull is in progress)", "skipped");
    }
    println!(
        "{} {} entries, {}; kept {} current and {} in use",
        if r.dry_run { "would free" } else { "freed" },
        r.removed.len(),
        mib(r.freed_bytes),
        r.kept_current.len(),
        r.kept_in_use.len()
    );
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_dates() {
        assert_eq!(super::utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(super::utc(1_700_000_000), "2023-11-14 22:13:20 UTC");
        assert_eq!(super::utc(951_782_400), "2000-02-29 00:00:00 UTC");
    }
}

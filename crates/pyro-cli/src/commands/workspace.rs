//! `pyro workspace ...`: persistent workspaces. Each subcommand is one SDK call, rendered.

use crate::render;
use pyro_mcp::{Command, CreateOptions, Error, UpdateOptions};
use std::io::Write;
use std::path::PathBuf;

#[derive(clap::Subcommand)]
pub enum WsCmd {
    /// Create a workspace (a VM that stays up), optionally seeded from a directory, archive or git checkout
    Create {
        environment: String,
        #[arg(long)]
        seed_path: Option<PathBuf>,
        #[arg(long)]
        name: Option<String>,
        #[arg(long = "label", value_name = "KEY=VALUE")]
        labels: Vec<String>,
        #[arg(long)]
        vcpu_count: Option<u32>,
        #[arg(long)]
        mem_mib: Option<u32>,
        #[arg(long, conflicts_with = "id_only")]
        json: bool,
        /// Print only the new workspace's id
        #[arg(long)]
        id_only: bool,
    },
    /// List workspaces, most recently active first
    List {
        #[arg(long)]
        json: bool,
    },
    /// Rename or relabel a workspace
    Update {
        id: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        clear_name: bool,
        #[arg(long = "label", value_name = "KEY=VALUE")]
        labels: Vec<String>,
        #[arg(long = "clear-label", value_name = "KEY")]
        clear_labels: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// Show a workspace's state (and why its VM stopped, if it did)
    Status {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Run a command in the workspace (several words: argv; one word: /bin/sh -c)
    Exec {
        id: String,
        #[arg(long)]
        cwd: Option<String>,
        #[arg(long, default_value_t = 30)]
        timeout_seconds: u64,
        #[arg(long = "env", value_name = "NAME=VALUE")]
        env: Vec<String>,
        #[arg(long)]
        json: bool,
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Command history since the last reset
    Logs {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Copy host files into the live workspace
    #[command(subcommand)]
    Sync(SyncCmd),
    /// List, read and write files without shell quoting
    #[command(subcommand)]
    File(FileCmd),
    /// Apply a unified diff (git diff or diff -u), all or nothing
    #[command(subcommand)]
    Patch(PatchCmd),
    /// One concise view of the session since the last reset
    Summary {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Changes since the baseline (the seed as of the last reset)
    Diff {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Copy a file or directory out to a new host path
    Export {
        id: String,
        path: String,
        #[arg(long)]
        output: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Return to the baseline (fresh disk layer, VM rebooted, history cleared)
    Reset {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Stop the VM and remove the workspace's disks and files
    Delete {
        id: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(clap::Subcommand)]
pub enum SyncCmd {
    /// Push a host directory or archive into the workspace
    Push {
        id: String,
        source: PathBuf,
        #[arg(long)]
        dest: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(clap::Subcommand)]
pub enum FileCmd {
    List {
        id: String,
        path: Option<String>,
        #[arg(long)]
        recursive: bool,
        #[arg(long)]
        json: bool,
    },
    Read {
        id: String,
        path: String,
        #[arg(long)]
        max_bytes: Option<u64>,
        /// Print only the content
        #[arg(long, conflicts_with = "json")]
        content_only: bool,
        #[arg(long)]
        json: bool,
    },
    Write {
        id: String,
        path: String,
        #[arg(long, conflicts_with = "text_file", required_unless_present = "text_file")]
        text: Option<String>,
        #[arg(long)]
        text_file: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(clap::Subcommand)]
pub enum PatchCmd {
    Apply {
        id: String,
        #[arg(long, conflicts_with = "patch_file", required_unless_present = "patch_file")]
        patch: Option<String>,
        #[arg(long)]
        patch_file: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
}

fn kv(items: &[String], what: &str) -> Result<Vec<(String, String)>, Error> {
    items
        .iter()
        .map(|s| {
            s.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| Error::invalid(format!("{what} must be NAME=VALUE, got '{s}'")))
        })
        .collect()
}

/// Read a host file given by the user for --text-file / --patch-file, bounded.
fn read_input(p: &PathBuf, limit: u64) -> Result<String, Error> {
    let meta = std::fs::metadata(p).map_err(|e| Error::not_found(format!("{}: {e}", p.display())))?;
    if meta.len() > limit {
        return Err(Error::limit(format!("{} is {} bytes; the limit is {limit}", p.display(), meta.len())));
    }
    std::fs::read_to_string(p).map_err(|e| Error::invalid(format!("{}: {e}", p.display())))
}

fn print_info(w: &pyro_mcp::WorkspaceInfo) {
    println!("id:           {}", w.id);
    if let Some(n) = &w.name {
        println!("name:         {n}");
    }
    if !w.labels.is_empty() {
        let l: Vec<String> = w.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        println!("labels:       {}", l.join(", "));
    }
    println!("environment:  {}", w.environment);
    println!("state:        {}{}", w.state, w.state_reason.as_ref().map(|r| format!(" ({r})")).unwrap_or_default());
    println!("resources:    {} vCPU, {} MiB", w.vcpu_count, w.mem_mib);
    println!("commands:     {} (resets: {})", w.command_count, w.reset_count);
}

pub fn main(c: WsCmd) -> i32 {
    let json = match &c {
        WsCmd::Create { json, .. }
        | WsCmd::List { json }
        | WsCmd::Update { json, .. }
        | WsCmd::Status { json, .. }
        | WsCmd::Exec { json, .. }
        | WsCmd::Logs { json, .. }
        | WsCmd::Diff { json, .. }
        | WsCmd::Summary { json, .. }
        | WsCmd::Export { json, .. }
        | WsCmd::Reset { json, .. }
        | WsCmd::Delete { json, .. }
        | WsCmd::Sync(SyncCmd::Push { json, .. })
        | WsCmd::File(FileCmd::List { json, .. } | FileCmd::Read { json, .. } | FileCmd::Write { json, .. })
        | WsCmd::Patch(PatchCmd::Apply { json, .. }) => *json,
    };
    match run(c) {
        Ok(code) => code,
        Err(e) => render::error(&e, json),
    }
}

fn run(c: WsCmd) -> Result<i32, Error> {
    let pyro = pyro_mcp::Pyro::new()?.on_progress(render::progress("workspace"));
    let mut ws = pyro.workspaces()?;
    match c {
        WsCmd::Create { environment, seed_path, name, labels, vcpu_count, mem_mib, json, id_only } => {
            let labels = labels.iter().map(|l| pyro_mcp::workspace::parse_label(l)).collect::<Result<_, _>>()?;
            let o = CreateOptions { environment, seed_path, name, labels, vcpu_count, mem_mib };
            let w = ws.create(&o, pyro.progress())?;
            if id_only {
                println!("{}", w.id);
            } else if json {
                render::json(&w);
            } else {
                print_info(&w);
            }
        }
        WsCmd::List { json } => {
            let list = ws.list()?;
            if json {
                render::json(&serde_json::json!({"count": list.len(), "workspaces": list}));
            } else if list.is_empty() {
                println!("no workspaces");
            } else {
                println!("{:<13} {:<20} {:<9} {:<12} {:>8}  LABELS", "ID", "NAME", "STATE", "ENVIRONMENT", "COMMANDS");
                for w in list {
                    let l: Vec<String> = w.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    println!(
                        "{:<13} {:<20} {:<9} {:<12} {:>8}  {}",
                        w.id,
                        w.name.unwrap_or_default(),
                        w.state,
                        w.environment,
                        w.command_count,
                        l.join(",")
                    );
                }
            }
        }
        WsCmd::Update { id, name, clear_name, labels, clear_labels, json } => {
            let labels = labels.iter().map(|l| pyro_mcp::workspace::parse_label(l)).collect::<Result<_, _>>()?;
            let w = ws.update(&id, &UpdateOptions { name, clear_name, labels, clear_labels })?;
            if json {
                render::json(&w);
            } else {
                print_info(&w);
            }
        }
        WsCmd::Status { id, json } => {
            let r = ws.resolve(&id)?;
            let w = ws.info(&r);
            if json {
                render::json(&w);
            } else {
                print_info(&w);
            }
        }
        WsCmd::Exec { id, cwd, timeout_seconds, env, json, command } => {
            let command = Command::from_words(&command).ok_or_else(|| Error::invalid("no command given"))?;
            render::stop_vms_on_signal();
            let r = ws.exec(&id, command, cwd.as_deref(), timeout_seconds, kv(&env, "--env")?, None)?;
            if json {
                render::json(&r);
            } else {
                let _ = std::io::stdout().write_all(&r.stdout);
                let _ = std::io::stdout().flush();
                let _ = std::io::stderr().write_all(&r.stderr);
                if let Some(why) = &r.vm_restarted {
                    eprintln!("[workspace] note: {why}");
                }
                eprintln!(
                    "[workspace-exec] workspace_id={} sequence={} exit_code={}{} duration_ms={}",
                    r.workspace_id,
                    r.sequence,
                    r.exit_code,
                    if r.timed_out { " timed_out=true" } else { "" },
                    r.duration_ms
                );
            }
            return Ok(r.exit_code);
        }
        WsCmd::Logs { id, json } => {
            let v = ws.logs(&id)?;
            if json {
                render::json(&v);
            } else {
                for e in v["entries"].as_array().unwrap() {
                    println!(
                        "#{} [exit {}] {} ({} ms)",
                        e["sequence"],
                        e["exit_code"],
                        e["command"].as_str().unwrap_or(""),
                        e["duration_ms"]
                    );
                    for (k, label) in [("stdout", "out"), ("stderr", "err")] {
                        for line in e[k].as_str().unwrap_or("").lines() {
                            println!("  {label}| {line}");
                        }
                    }
                }
            }
        }
        WsCmd::Sync(SyncCmd::Push { id, source, dest, json }) => {
            let v = ws.sync_push(&id, &source, dest.as_deref())?;
            if json {
                render::json(&v);
            } else {
                let s = &v["workspace_sync"];
                println!(
                    "pushed {} entries ({} bytes) to {}",
                    s["entry_count"],
                    s["bytes_written"],
                    s["destination"].as_str().unwrap_or("")
                );
            }
        }
        WsCmd::File(FileCmd::List { id, path, recursive, json }) => {
            let v = ws.file_list(&id, path.as_deref(), recursive)?;
            if json {
                render::json(&v);
            } else {
                for e in v["entries"].as_array().unwrap() {
                    let t = e.get("target").and_then(|t| t.as_str()).map(|t| format!(" -> {t}")).unwrap_or_default();
                    println!(
                        "{:<8} {:>10} {}{}",
                        e["kind"].as_str().unwrap_or(""),
                        e["size"],
                        e["path"].as_str().unwrap_or(""),
                        t
                    );
                }
                if v["truncated"] == true {
                    eprintln!("[file-list] truncated: {}", v["hint"].as_str().unwrap_or(""));
                }
            }
        }
        WsCmd::File(FileCmd::Read { id, path, max_bytes, content_only, json }) => {
            let r = ws.file_read(&id, &path, max_bytes)?;
            if json {
                render::json(&r);
            } else {
                let _ = std::io::stdout().write_all(&r.content);
                if !content_only {
                    eprintln!(
                        "[file-read] path={} size_bytes={} truncated={} binary={}",
                        r.path, r.size_bytes, r.truncated, r.binary
                    );
                }
            }
        }
        WsCmd::File(FileCmd::Write { id, path, text, text_file, json }) => {
            let content = match (text, text_file) {
                (Some(t), _) => t,
                (None, Some(f)) => read_input(&f, pyro_mcp::workspace::files::MAX_WRITE_BYTES as u64)?,
                _ => unreachable!("clap requires one"),
            };
            let v = ws.file_write(&id, &path, content.as_bytes())?;
            if json {
                render::json(&v);
            } else {
                println!("wrote {} bytes to {}", v["bytes_written"], v["path"].as_str().unwrap_or(""));
            }
        }
        WsCmd::Patch(PatchCmd::Apply { id, patch, patch_file, json }) => {
            let text = match (patch, patch_file) {
                (Some(p), _) => p,
                (None, Some(f)) => read_input(&f, pyro_mcp::workspace::patch::MAX_PATCH_BYTES as u64)?,
                _ => unreachable!("clap requires one"),
            };
            let v = ws.patch_apply(&id, &text)?;
            if json {
                render::json(&v);
            } else {
                for e in v["entries"].as_array().unwrap() {
                    println!(
                        "{:<12} {} (+{} -{})",
                        e["status"].as_str().unwrap_or(""),
                        e["path"].as_str().unwrap_or(""),
                        e["additions"],
                        e["deletions"]
                    );
                }
            }
        }
        WsCmd::Summary { id, json } => {
            let v = ws.summary(&id)?;
            if json {
                render::json(&v);
            } else {
                print!("{}", pyro_mcp::workspace::summary::render(&v));
            }
        }
        WsCmd::Diff { id, json } => {
            let d = ws.diff(&id)?;
            if json {
                render::json(&d);
            } else {
                let s = &d.summary;
                println!(
                    "{} changed: {} added, {} modified, {} deleted, {} type changed",
                    s.total, s.added, s.modified, s.deleted, s.type_changed
                );
                for e in &d.entries {
                    println!("  {:<12} {}{}", e.status, e.path, if e.binary { " (binary)" } else { "" });
                }
                if let Some(n) = d.entries_omitted {
                    println!("  +{n} more");
                }
                print!("{}", d.patch);
            }
        }
        WsCmd::Export { id, path, output, json } => {
            let v = ws.export(&id, &path, &output)?;
            if json {
                render::json(&v);
            } else {
                println!(
                    "exported {} ({} entries, {} bytes) to {}",
                    v["path"].as_str().unwrap_or(""),
                    v["entry_count"],
                    v["bytes_written"],
                    output.display()
                );
            }
        }
        WsCmd::Reset { id, json } => {
            let w = ws.reset(&id)?;
            if json {
                render::json(&w);
            } else {
                print_info(&w);
            }
        }
        WsCmd::Delete { id, json } => {
            let v = ws.delete(&id)?;
            if json {
                render::json(&v);
            } else {
                println!("deleted {}", v["workspace_id"].as_str().unwrap_or(""));
            }
        }
    }
    Ok(0)
}

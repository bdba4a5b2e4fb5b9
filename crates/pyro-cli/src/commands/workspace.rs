//! `pyro workspace ...`: persistent workspaces. Each subcommand is one SDK call, rendered.

use crate::render;
use pyro_mcp::{Command, CreateOptions, Error, ExecOptions, SecretEnv, SecretSpec, UpdateOptions};
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
        #[command(flatten)]
        network: crate::commands::NetworkArgs,
        /// Publish a guest port on the host's 127.0.0.1 (needs egress+published-ports)
        #[arg(long = "publish", value_name = "[HOST_PORT:]GUEST_PORT")]
        publish: Vec<String>,
        /// A secret for `exec --secret-env` (the value shows in `ps`: prefer --secret-file)
        #[arg(long = "secret", value_name = "NAME=VALUE")]
        secrets: Vec<String>,
        /// A secret read from a host file (one trailing newline dropped)
        #[arg(long = "secret-file", value_name = "NAME=PATH")]
        secret_files: Vec<String>,
        /// Print only the new workspace's id
        #[arg(long, conflicts_with = "json")]
        id_only: bool,
    },
    /// List workspaces, most recently active first
    List,
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
    },
    /// Show a workspace's state (and why its VM stopped, if it did)
    Status { id: String },
    /// Run a command in the workspace (several words: argv; one word: /bin/sh -c)
    Exec {
        id: String,
        #[arg(long)]
        cwd: Option<String>,
        #[arg(long, default_value_t = 30)]
        timeout_seconds: u64,
        #[arg(long = "env", value_name = "NAME=VALUE")]
        env: Vec<String>,
        /// Put a secret of the workspace into this command's environment (as ENV_NAME, or
        /// under its own name)
        #[arg(long = "secret-env", value_name = "SECRET[=ENV_NAME]")]
        secret_env: Vec<String>,
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Command history since the last reset
    Logs { id: String },
    /// Copy host files into the live workspace
    #[command(subcommand)]
    Sync(SyncCmd),
    /// List, read and write files without shell quoting
    #[command(subcommand)]
    File(FileCmd),
    /// Apply a unified diff (git diff or diff -u), all or nothing
    #[command(subcommand)]
    Patch(PatchCmd),
    /// Interactive shells on a PTY, owned by the guest
    #[command(subcommand)]
    Shell(crate::commands::shell::ShellCmd),
    /// One concise view of the session since the last reset
    Summary { id: String },
    /// Changes since the baseline (the seed as of the last reset)
    Diff {
        id: String,
        /// Only changes at or under this path (a file or directory in the workspace)
        #[arg(long)]
        path: Option<String>,
        /// Start at this entry (a previous result's `next_cursor`: the next page past 500)
        #[arg(long)]
        cursor: Option<usize>,
    },
    /// Copy a file or directory out to a new host path
    Export {
        id: String,
        path: String,
        #[arg(long)]
        output: PathBuf,
        /// Cap on the exported file contents, in bytes (default 2 GiB)
        #[arg(long, value_name = "BYTES")]
        max_bytes: Option<u64>,
        /// Also export the guest's .git/config, .git/hooks and .git/info (left out by
        /// default: the host's git would run or obey them)
        #[arg(long)]
        include_git_config: bool,
    },
    /// Return to the baseline or a snapshot (fresh disk layer, VM rebooted, history cleared)
    Reset {
        id: String,
        /// A snapshot to go back to (default: baseline)
        #[arg(long, value_name = "NAME")]
        snapshot: Option<String>,
    },
    /// Stop the VM and remove the workspace's disks and files
    Delete { id: String },
    /// Stop the workspace: save its memory (start resumes its processes) and end its VM
    Stop {
        id: String,
        /// Shut the guest down instead of saving its memory (start boots from the disk)
        #[arg(long)]
        discard_memory: bool,
    },
    /// Start a stopped workspace (resuming its saved memory when there is some)
    Start { id: String },
    /// A new workspace from this one's current disk, and its memory when it is running
    /// (processes and services go on in both); baseline, history and secrets carried over
    Fork {
        id: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long = "label", value_name = "KEY=VALUE")]
        labels: Vec<String>,
        /// Print only the new workspace's id
        #[arg(long, conflicts_with = "json")]
        id_only: bool,
    },
    /// Read a stopped workspace's whole disk without booting it
    #[command(subcommand)]
    Disk(super::disk::DiskCmd),
    /// Long-running services (servers, watchers) with readiness checks
    #[command(subcommand)]
    Service(super::service::ServiceCmd),
    /// Named snapshots of the whole guest disk
    #[command(subcommand)]
    Snapshot(super::snapshot::SnapshotCmd),
}

#[derive(clap::Subcommand)]
pub enum SyncCmd {
    /// Push a host directory or archive into the workspace
    Push {
        id: String,
        source: PathBuf,
        #[arg(long)]
        dest: Option<String>,
    },
}

#[derive(clap::Subcommand)]
pub enum FileCmd {
    List {
        id: String,
        path: Option<String>,
        #[arg(long)]
        recursive: bool,
    },
    Read {
        id: String,
        path: String,
        #[arg(long)]
        max_bytes: Option<u64>,
        /// Start this many bytes into the file (page on with the `next_offset` a truncated
        /// read reports)
        #[arg(long, default_value_t = 0)]
        offset: u64,
        /// Print only the content
        #[arg(long, conflicts_with = "json")]
        content_only: bool,
    },
    Write {
        id: String,
        path: String,
        #[arg(long, conflicts_with = "text_file", required_unless_present = "text_file")]
        text: Option<String>,
        #[arg(long)]
        text_file: Option<PathBuf>,
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
    },
}

/// Read a host file given by the user for --text-file / --patch-file, bounded.
/// Opened once, a regular file only (`/dev/zero` or a FIFO is refused, not read forever),
/// never more than `limit + 1` bytes read.
fn read_input(p: &std::path::Path, limit: u64) -> Result<String, Error> {
    let bytes = pyro_mcp::hostfile::read_bounded(p, "input file", limit)?;
    String::from_utf8(bytes).map_err(|_| Error::invalid(format!("{} is not UTF-8 text", p.display())))
}

pub fn main(c: WsCmd, json: bool) -> i32 {
    match run(c, json) {
        Ok(code) => code,
        Err(e) => render::error(&e, json),
    }
}

fn run(c: WsCmd, json: bool) -> Result<i32, Error> {
    let pyro = pyro_mcp::Pyro::new()?.on_progress(render::progress("workspace"));
    let mut ws = pyro.workspaces()?;
    match c {
        WsCmd::Create {
            environment,
            seed_path,
            name,
            labels,
            vcpu_count,
            mem_mib,
            network,
            publish,
            secrets,
            secret_files,
            id_only,
        } => {
            let labels = labels.iter().map(|l| pyro_mcp::internal::parse_label(l)).collect::<Result<_, _>>()?;
            let mut network = network.options()?;
            network.publish = publish.iter().map(|p| pyro_mcp::PortSpec::parse(p)).collect::<Result<_, _>>()?;
            let secrets = secrets
                .iter()
                .map(|s| SecretSpec::parse_literal(s))
                .chain(secret_files.iter().map(|s| SecretSpec::parse_file(s)))
                .collect::<Result<_, _>>()?;
            let o = CreateOptions {
                environment,
                seed_path,
                name,
                labels,
                vcpu_count,
                mem_mib,
                network,
                secrets,
                seed_path_resolved: false,
            };
            let w = ws.create(&o, pyro.progress())?;
            render::show_or_id(&w, &w.id, id_only, json);
        }
        WsCmd::List => render::show(&ws.list()?, json),
        WsCmd::Shell(c) => return crate::commands::shell::run(&mut ws, c, json),
        WsCmd::Update { id, name, clear_name, labels, clear_labels } => {
            let labels = labels.iter().map(|l| pyro_mcp::internal::parse_label(l)).collect::<Result<_, _>>()?;
            render::show(&ws.update(&id, &UpdateOptions { name, clear_name, labels, clear_labels })?, json);
        }
        WsCmd::Status { id } => render::show(&ws.status(&id)?, json),
        WsCmd::Exec { id, cwd, timeout_seconds, env, secret_env, command } => {
            let command = Command::from_words(&command).ok_or_else(|| Error::invalid("no command given"))?;
            let o = ExecOptions {
                cwd,
                timeout_s: timeout_seconds,
                env: super::kv(&env, "--env")?,
                secret_env: secret_env.iter().map(|s| SecretEnv::parse(s)).collect::<Result<_, _>>()?,
                ..ExecOptions::new(command)
            };
            render::stop_vms_on_signal();
            let r = ws.exec_with(&id, &o)?;
            if json {
                render::json(&r);
            } else {
                // The command's own output passes through untouched; the facts go to stderr.
                let _ = std::io::stdout().write_all(&r.stdout);
                let _ = std::io::stdout().flush();
                let _ = std::io::stderr().write_all(&r.stderr);
                if let Some(why) = &r.vm_restarted {
                    eprintln!("[workspace] note: {why}");
                }
                eprintln!("[workspace-exec] {}", r.status_line());
            }
            return Ok(r.exit_code);
        }
        WsCmd::Logs { id } => render::show(&ws.logs(&id)?, json),
        WsCmd::Sync(SyncCmd::Push { id, source, dest }) => {
            render::show(&ws.sync_push(&id, &source, dest.as_deref())?, json)
        }
        WsCmd::File(FileCmd::List { id, path, recursive }) => {
            render::show(&ws.file_list(&id, path.as_deref(), recursive)?, json)
        }
        WsCmd::File(FileCmd::Read { id, path, max_bytes, offset, content_only }) => {
            let r = ws.file_read_at(&id, &path, offset, max_bytes)?;
            if json {
                render::json(&r);
            } else {
                let _ = std::io::stdout().write_all(&r.content);
                if !content_only {
                    eprintln!("[file-read] {}", r.status_line());
                }
            }
        }
        WsCmd::File(FileCmd::Write { id, path, text, text_file }) => {
            let content = match (text, text_file) {
                (Some(t), _) => t,
                (None, Some(f)) => read_input(&f, pyro_mcp::internal::MAX_WRITE_BYTES as u64)?,
                _ => unreachable!("clap requires one"),
            };
            render::show(&ws.file_write(&id, &path, content.as_bytes())?, json);
        }
        WsCmd::Patch(PatchCmd::Apply { id, patch, patch_file }) => {
            let text = match (patch, patch_file) {
                (Some(p), _) => p,
                (None, Some(f)) => read_input(&f, pyro_mcp::internal::MAX_PATCH_BYTES as u64)?,
                _ => unreachable!("clap requires one"),
            };
            render::show(&ws.patch_apply(&id, &text)?, json);
        }
        WsCmd::Summary { id } => render::show(&ws.summary(&id)?, json),
        WsCmd::Diff { id, path, cursor } => {
            render::show(&ws.diff_page(&id, path.as_deref(), usize::MAX, cursor.unwrap_or(0))?, json)
        }
        WsCmd::Export { id, path, output, max_bytes, include_git_config } => {
            let o = pyro_mcp::ExportOptions { max_bytes, include_git_config };
            render::show(&ws.export_with(&id, &path, &output, &o)?, json)
        }
        WsCmd::Reset { id, snapshot } => render::show(&ws.reset_to(&id, snapshot.as_deref())?, json),
        WsCmd::Delete { id } => render::show(&ws.delete(&id)?, json),
        WsCmd::Stop { id, discard_memory } => render::show(&ws.stop(&id, discard_memory)?, json),
        WsCmd::Start { id } => render::show(&ws.start(&id)?, json),
        WsCmd::Fork { id, name, labels, id_only } => {
            let labels = labels.iter().map(|l| pyro_mcp::internal::parse_label(l)).collect::<Result<_, _>>()?;
            let w = ws.fork(&id, &pyro_mcp::ForkOptions { name, labels })?;
            render::show_or_id(&w, &w.id, id_only, json);
        }
        WsCmd::Disk(c) => return super::disk::run(&mut ws, c, json),
        WsCmd::Service(c) => return super::service::run(&mut ws, c, json),
        WsCmd::Snapshot(c) => return super::snapshot::run(&mut ws, c, json),
    }
    Ok(0)
}

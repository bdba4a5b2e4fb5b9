//! Chat-host setup: `pyro host connect|print-config|doctor|repair`.
//!
//! Each supported host keeps its MCP servers in its own config file; pyro's entry is named
//! `pyro` and runs `<absolute path of this pyro> mcp serve`. Connecting goes through the host's
//! own CLI when it is installed (so the host validates its file), else edits the file directly,
//! keeping every other entry. Every edit is preceded by a backup, and a second connect that
//! would change nothing changes nothing.

pub mod claude;
pub mod codex;
pub mod probe;

use pyro_mcp::Error;
use serde::Serialize;
use std::path::{Path, PathBuf};

pub const ENTRY: &str = "pyro";

/// The command line a host should run for pyro's server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    pub command: String,
    pub args: Vec<String>,
}

impl Entry {
    pub fn desired(profile: Option<&str>) -> Result<Entry, Error> {
        let exe = std::env::current_exe().map_err(|e| Error::internal(format!("cannot find this pyro binary: {e}")))?;
        let exe = exe.canonicalize().unwrap_or(exe);
        let mut args = vec!["mcp".to_string(), "serve".to_string()];
        if let Some(p) = profile {
            args.extend(["--profile".to_string(), p.to_string()]);
        }
        Ok(Entry { command: exe.display().to_string(), args })
    }
}

/// The hosts pyro knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Host {
    ClaudeCode,
    Codex,
    Opencode,
}

impl Host {
    pub fn name(self) -> &'static str {
        match self {
            Host::ClaudeCode => "claude-code",
            Host::Codex => "codex",
            Host::Opencode => "opencode",
        }
    }
    pub fn config_path(self) -> Result<PathBuf, Error> {
        let home = std::env::var_os("HOME").map(PathBuf::from).ok_or_else(|| Error::invalid("HOME is not set"))?;
        Ok(match self {
            Host::ClaudeCode => home.join(".claude.json"),
            Host::Codex => std::env::var_os("CODEX_HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| home.join(".codex"))
                .join("config.toml"),
            Host::Opencode => std::env::var_os("XDG_CONFIG_HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| home.join(".config"))
                .join("opencode/opencode.json"),
        })
    }
    /// pyro's entry as the host's config has it now (None: not configured).
    pub fn current(self) -> Result<Option<Entry>, Error> {
        let path = self.config_path()?;
        match self {
            Host::ClaudeCode => claude::read(&path),
            Host::Codex => codex::read(&path),
            Host::Opencode => opencode_read(&path),
        }
    }
}

/// Copy a config file aside before editing it; returns the backup's path.
pub fn backup(path: &Path) -> Result<Option<PathBuf>, Error> {
    if !path.exists() {
        return Ok(None);
    }
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let name = format!("{}.pyro-backup-{t}", path.file_name().unwrap_or_default().to_string_lossy());
    let dst = path.with_file_name(name);
    std::fs::copy(path, &dst).map_err(|e| Error::internal(format!("backing up {}: {e}", path.display())))?;
    Ok(Some(dst))
}

/// Write a file atomically, keeping the original's permissions.
pub fn write_config(path: &Path, text: &str) -> Result<(), Error> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::internal(format!("creating {}: {e}", dir.display())))?;
    }
    let tmp = path.with_extension("pyro-tmp");
    std::fs::write(&tmp, text).map_err(|e| Error::internal(format!("writing {}: {e}", tmp.display())))?;
    if let Ok(m) = std::fs::metadata(path) {
        let _ = std::fs::set_permissions(&tmp, m.permissions());
    }
    std::fs::rename(&tmp, path).map_err(|e| Error::internal(format!("writing {}: {e}", path.display())))
}

/// The `opencode.json` snippet for pyro.
pub fn opencode_snippet(e: &Entry) -> serde_json::Value {
    let mut cmd = vec![e.command.clone()];
    cmd.extend(e.args.iter().cloned());
    serde_json::json!({
        "$schema": "https://opencode.ai/config.json",
        "mcp": { ENTRY: { "type": "local", "command": cmd, "enabled": true } }
    })
}

fn opencode_read(path: &Path) -> Result<Option<Entry>, Error> {
    let Ok(text) = std::fs::read_to_string(path) else { return Ok(None) };
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::invalid(format!("{} is not valid JSON: {e}", path.display())))?;
    let Some(cmd) = v["mcp"][ENTRY]["command"].as_array() else { return Ok(None) };
    let words: Vec<String> = cmd.iter().filter_map(|w| w.as_str().map(String::from)).collect();
    Ok(words.split_first().map(|(c, a)| Entry { command: c.clone(), args: a.to_vec() }))
}

/// What connect/repair did, for rendering.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub host: &'static str,
    pub changed: bool,
    pub method: String,
    pub config_path: PathBuf,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backup: Option<PathBuf>,
    pub entry: Entry,
    pub message: String,
}

/// Configure `host` to run pyro's server. Idempotent; `force` rewrites even an identical entry
/// (repair of a broken file).
pub fn connect(host: Host, profile: Option<&str>, force: bool) -> Result<Outcome, Error> {
    let want = Entry::desired(profile)?;
    let path = host.config_path()?;
    let current = host.current();
    if let Ok(Some(cur)) = &current {
        if *cur == want && !force {
            return Ok(Outcome {
                host: host.name(),
                changed: false,
                method: "none".into(),
                config_path: path,
                backup: None,
                entry: want,
                message: "already configured; nothing changed".into(),
            });
        }
    }
    let backup = backup(&path)?;
    let method = match host {
        Host::ClaudeCode => claude::connect(&path, &want, current.is_err())?,
        Host::Codex => codex::connect(&path, &want, current.is_err())?,
        Host::Opencode => {
            return Err(Error::invalid("opencode is configured through its opencode.json")
                .hint("run `pyro host print-config opencode` and merge the snippet into opencode.json"))
        }
    };
    // Check what the host will read now.
    match host.current()? {
        Some(e) if e == want => {}
        other => {
            return Err(Error::internal(format!(
                "after editing, {} holds {:?} instead of pyro's entry",
                path.display(),
                other
            )))
        }
    }
    Ok(Outcome {
        host: host.name(),
        changed: true,
        method,
        config_path: path,
        backup,
        entry: want,
        message: "configured".into(),
    })
}

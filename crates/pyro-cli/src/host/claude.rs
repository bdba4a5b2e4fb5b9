//! Claude Code: `claude mcp add --scope user` when the CLI is installed, else the
//! `mcpServers` object of `~/.claude.json` (user scope), other keys untouched.

use super::{write_config, Entry, ENTRY};
use pyro_mcp::Error;
use std::path::Path;
use std::process::Command;

pub fn read(path: &Path) -> Result<Option<Entry>, Error> {
    let Ok(text) = std::fs::read_to_string(path) else { return Ok(None) };
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::invalid(format!("{} is not valid JSON: {e}", path.display())))?;
    let e = &v["mcpServers"][ENTRY];
    let Some(cmd) = e["command"].as_str() else { return Ok(None) };
    let args = e["args"]
        .as_array()
        .map(|a| a.iter().filter_map(|x| x.as_str().map(String::from)).collect())
        .unwrap_or_default();
    Ok(Some(Entry { command: cmd.into(), args }))
}

/// Returns how it was done. `broken`: the file does not parse, so the CLI cannot be trusted
/// with it; we repair the JSON ourselves.
pub fn connect(path: &Path, want: &Entry, broken: bool) -> Result<String, Error> {
    if !broken {
        if let Some(claude) = pyro_mcp::internal::which("claude") {
            let _ = Command::new(&claude).args(["mcp", "remove", ENTRY, "--scope", "user"]).output();
            let out = Command::new(&claude)
                .args(["mcp", "add", "--scope", "user", ENTRY, "--"])
                .arg(&want.command)
                .args(&want.args)
                .output()
                .map_err(|e| Error::internal(format!("running claude: {e}")))?;
            if !out.status.success() {
                return Err(Error::internal(format!(
                    "claude mcp add failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                )));
            }
            return Ok("claude mcp add --scope user".into());
        }
    }
    let mut v: serde_json::Value = std::fs::read_to_string(path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .filter(|v: &serde_json::Value| v.is_object())
        .unwrap_or_else(|| serde_json::json!({}));
    if !v["mcpServers"].is_object() {
        v["mcpServers"] = serde_json::json!({});
    }
    v["mcpServers"][ENTRY] =
        serde_json::json!({"type": "stdio", "command": want.command, "args": want.args, "env": {}});
    write_config(path, &(serde_json::to_string_pretty(&v).unwrap() + "\n"))?;
    Ok(format!("edited {}", path.display()))
}

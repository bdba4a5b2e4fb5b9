//! Codex: `codex mcp add` when the CLI is installed, else `[mcp_servers.pyro]` in
//! `$CODEX_HOME/config.toml` (default `~/.codex`), edited with toml_edit so comments and other
//! tables stay as they were.

use super::{write_config, Entry, ENTRY};
use pyro_mcp::Error;
use std::path::Path;
use std::process::Command;

pub fn read(path: &Path) -> Result<Option<Entry>, Error> {
    let Ok(text) = std::fs::read_to_string(path) else { return Ok(None) };
    let doc: toml_edit::DocumentMut =
        text.parse().map_err(|e| Error::invalid(format!("{} is not valid TOML: {e}", path.display())))?;
    let Some(t) = doc.get("mcp_servers").and_then(|s| s.get(ENTRY)) else { return Ok(None) };
    let Some(cmd) = t.get("command").and_then(|c| c.as_str()) else { return Ok(None) };
    let args = t
        .get("args")
        .and_then(|a| a.as_array())
        .map(|a| a.iter().filter_map(|x| x.as_str().map(String::from)).collect())
        .unwrap_or_default();
    Ok(Some(Entry { command: cmd.into(), args }))
}

pub fn connect(path: &Path, want: &Entry, broken: bool) -> Result<String, Error> {
    if !broken {
        if let Some(codex) = pyro_mcp::internal::which("codex") {
            let _ = Command::new(&codex).args(["mcp", "remove", ENTRY]).output();
            let out = Command::new(&codex)
                .args(["mcp", "add", ENTRY, "--"])
                .arg(&want.command)
                .args(&want.args)
                .output()
                .map_err(|e| Error::internal(format!("running codex: {e}")))?;
            if !out.status.success() {
                return Err(Error::internal(format!(
                    "codex mcp add failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                )));
            }
            return Ok("codex mcp add".into());
        }
    }
    let text = std::fs::read_to_string(path).unwrap_or_default();
    // A file that does not parse is replaced by its valid part: we keep the backup.
    let mut doc: toml_edit::DocumentMut = text.parse().unwrap_or_default();
    if !doc.contains_table("mcp_servers") {
        let mut t = toml_edit::Table::new();
        t.set_implicit(true);
        doc["mcp_servers"] = toml_edit::Item::Table(t);
    }
    let mut t = toml_edit::Table::new();
    t["command"] = toml_edit::value(want.command.clone());
    let mut a = toml_edit::Array::new();
    for x in &want.args {
        a.push(x.as_str());
    }
    t["args"] = toml_edit::value(a);
    doc["mcp_servers"][ENTRY] = toml_edit::Item::Table(t);
    write_config(path, &doc.to_string())?;
    Ok(format!("edited {}", path.display()))
}

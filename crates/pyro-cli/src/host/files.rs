//! File plumbing shared by the host helpers: backups, atomic writes, JSON objects read
//! strictly, and the project directory a host resolves from the working directory.

use pyro_mcp::Error;
use std::path::{Path, PathBuf};

/// Copy a config file aside before editing it; returns the backup's path. Two edits within
/// one second get distinct names, so the first backup (the user's original) is never
/// overwritten by a copy of our own edit.
pub fn backup(path: &Path) -> Result<Option<PathBuf>, Error> {
    if !path.exists() {
        return Ok(None);
    }
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let base = format!("{}.pyro-backup-{t}", path.file_name().unwrap_or_default().to_string_lossy());
    let mut dst = path.with_file_name(&base);
    let mut n = 1;
    while dst.exists() {
        dst = path.with_file_name(format!("{base}-{n}"));
        n += 1;
    }
    std::fs::copy(path, &dst).map_err(|e| Error::internal(format!("backing up {}: {e}", path.display())))?;
    Ok(Some(dst))
}

/// Write a file atomically (temp file + rename), keeping the original's permissions.
pub fn write_config(path: &Path, text: &str) -> Result<(), Error> {
    write_mode(path, text, 0o666)
}

/// `write_config` for a file that holds a bearer token: a new file is created 0600 (an
/// existing one keeps its mode, which the caller checks with `mode`).
pub fn write_private(path: &Path, text: &str) -> Result<(), Error> {
    write_mode(path, text, 0o600)
}

/// `mode` (under the umask) for a new file; the temporary file is never wider than that.
fn write_mode(path: &Path, text: &str, mode: u32) -> Result<(), Error> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::internal(format!("creating {}: {e}", dir.display())))?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".pyro-tmp");
    let tmp = PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(&tmp)?;
        f.write_all(text.as_bytes())
    };
    write().map_err(|e| Error::internal(format!("writing {}: {e}", tmp.display())))?;
    if let Ok(m) = std::fs::metadata(path) {
        let _ = std::fs::set_permissions(&tmp, m.permissions());
    }
    std::fs::rename(&tmp, path).map_err(|e| Error::internal(format!("writing {}: {e}", path.display())))
}

/// The permission bits of `path`.
pub fn mode(path: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    Some(std::fs::metadata(path).ok()?.permissions().mode() & 0o777)
}

/// A JSON file's top-level object. `Ok(None)`: no such file. A file that is not a JSON
/// object is an error naming the file.
pub fn read_json(path: &Path) -> Result<Option<serde_json::Value>, Error> {
    let Ok(text) = std::fs::read_to_string(path) else { return Ok(None) };
    if text.trim().is_empty() {
        return Ok(Some(serde_json::json!({})));
    }
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::invalid(format!("{} is not valid JSON: {e}", path.display())))?;
    if !v.is_object() {
        return Err(Error::invalid(format!("{} is not a JSON object", path.display())));
    }
    Ok(Some(v))
}

/// Pretty JSON with a final newline, the way the hosts write their files.
pub fn json_text(v: &serde_json::Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default() + "\n"
}

/// The working directory, as the hosts see it.
pub fn cwd() -> Result<PathBuf, Error> {
    std::env::current_dir().map_err(|e| Error::internal(format!("cannot read the working directory: {e}")))
}

/// The project a host resolves from `cwd`: the git work tree around it, else `cwd` itself.
/// Claude Code keys its local scope by this path; OpenCode stops its config search here.
pub fn project_root(cwd: &Path) -> PathBuf {
    cwd.ancestors().find(|d| d.join(".git").exists()).unwrap_or(cwd).to_path_buf()
}

/// `$HOME`, required by every host's default config location.
pub fn home() -> Result<PathBuf, Error> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .ok_or_else(|| Error::invalid("HOME is not set"))
}

/// An environment variable that names a directory; empty counts as unset, as in the hosts.
pub fn env_dir(name: &str) -> Option<PathBuf> {
    std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from)
}

/// A JSON number as whole milliseconds (hosts accept integers; a float is truncated).
pub fn json_ms(v: &serde_json::Value) -> Option<u64> {
    v.as_u64().or_else(|| v.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
}

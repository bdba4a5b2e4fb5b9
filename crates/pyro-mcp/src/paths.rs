//! Where pyro keeps things, per user: XDG cache, data and runtime dirs, all overridable.
//!
//! - cache (`$PYRO_CACHE_DIR`, else `$XDG_CACHE_HOME/pyro-mcp`, else `~/.cache/pyro-mcp`):
//!   kernels, initramfs, environments, accelerator verdicts. Safe to delete.
//! - data (`$PYRO_DATA_DIR`, else `$XDG_DATA_HOME/pyro-mcp`, else `~/.local/share/pyro-mcp`):
//!   workspaces and their disks.
//! - runtime (`$PYRO_RUNTIME_DIR`, else `$XDG_RUNTIME_DIR/pyro-mcp`, else `<cache>/run`):
//!   per-VM sockets and serial logs. Always 0700: sockets are never reachable by other users.
//! - config (`$PYRO_CONFIG_DIR`, else `$XDG_CONFIG_HOME/pyro-mcp`, else `~/.config/pyro-mcp`):
//!   the MCP HTTP server's token file.

use crate::error::{Error, Result};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The three directories pyro keeps things in, resolved once (see the module docs for each and its
/// environment variable).
#[derive(Debug, Clone)]
pub struct Paths {
    /// Kernels, the initramfs, environments, templates and accelerator verdicts; safe to delete.
    pub cache: PathBuf,
    /// Workspaces, their disks and the state database.
    pub data: PathBuf,
    /// Per-VM sockets and logs of running VMs; always 0700.
    pub runtime: PathBuf,
}

fn env_dir(name: &str) -> Option<PathBuf> {
    std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from).filter(|p| p.is_absolute())
}

/// pyro's config directory (see above); not part of [`Paths`], as only the HTTP server's
/// token lives there.
pub fn config_dir() -> Result<PathBuf> {
    env_dir("PYRO_CONFIG_DIR")
        .or_else(|| env_dir("XDG_CONFIG_HOME").map(|p| p.join("pyro-mcp")))
        .or_else(|| env_dir("HOME").map(|h| h.join(".config/pyro-mcp")))
        .ok_or_else(|| Error::invalid("cannot find a config directory").hint("set HOME or PYRO_CONFIG_DIR"))
}

impl Paths {
    /// Resolve from the environment. Fails only when no home directory can be found at all.
    pub fn from_env() -> Result<Paths> {
        let home = env_dir("HOME");
        let under_home = |rel: &str| home.as_ref().map(|h| h.join(rel));
        let cache = env_dir("PYRO_CACHE_DIR")
            .or_else(|| env_dir("XDG_CACHE_HOME").map(|p| p.join("pyro-mcp")))
            .or_else(|| under_home(".cache/pyro-mcp"))
            .ok_or_else(|| Error::invalid("cannot find a cache directory").hint("set HOME or PYRO_CACHE_DIR"))?;
        let data = env_dir("PYRO_DATA_DIR")
            .or_else(|| env_dir("XDG_DATA_HOME").map(|p| p.join("pyro-mcp")))
            .or_else(|| under_home(".local/share/pyro-mcp"))
            .ok_or_else(|| Error::invalid("cannot find a data directory").hint("set HOME or PYRO_DATA_DIR"))?;
        let runtime = env_dir("PYRO_RUNTIME_DIR")
            .or_else(|| env_dir("XDG_RUNTIME_DIR").map(|p| p.join("pyro-mcp")))
            .unwrap_or_else(|| cache.join("run"));
        Ok(Paths { cache, data, runtime })
    }

    /// Where verified guest kernels are kept, one directory per kernel.
    pub fn kernels(&self) -> PathBuf {
        self.cache.join("kernels")
    }
    /// Where environment installs are kept, one directory per environment name.
    pub fn environments(&self) -> PathBuf {
        self.cache.join("environments")
    }
    /// Where built initramfs images are kept, each named by a hash of what it holds.
    pub fn initramfs(&self) -> PathBuf {
        self.cache.join("initramfs")
    }
    /// Workspace dirs (`<data>/workspaces/<id>`), and warm spares waiting to become one.
    pub fn workspaces(&self) -> PathBuf {
        self.data.join("workspaces")
    }
    /// Per-VM runtime directories (`<runtime>/vms/<id>`): sockets, QMP, serial log.
    pub fn vms(&self) -> PathBuf {
        self.runtime.join("vms")
    }
}

/// Create a directory (and parents) private to the user: 0700. An existing directory that
/// others can enter is tightened, since sockets and disks live below it.
pub fn private_dir(path: &Path) -> Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
    let meta = std::fs::metadata(path).map_err(|e| Error::io(format!("checking {}", path.display()), e))?;
    if meta.permissions().mode() & 0o077 != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| Error::io(format!("restricting {}", path.display()), e))?;
    }
    Ok(())
}

/// Write a file atomically: a temp file beside it, fsync, rename.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    use std::io::Write;
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let mut f = std::fs::File::create(&tmp).map_err(|e| Error::io(format!("writing {}", tmp.display()), e))?;
    f.write_all(data).and_then(|_| f.sync_all()).map_err(|e| Error::io(format!("writing {}", tmp.display()), e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(format!("renaming {}", path.display()), e))
}

/// fsync a directory, so renames and creations in it survive a crash.
pub fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir).and_then(|f| f.sync_all()).map_err(|e| Error::io(format!("syncing {}", dir.display()), e))
}

/// Hex sha256 of a file, streamed.
pub fn sha256_file(path: &Path) -> Result<String> {
    use sha2::{Digest, Sha256};
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    Ok(hex::encode(h.finalize()))
}

/// Bytes a tree occupies on disk.
pub fn disk_usage(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(m) = std::fs::symlink_metadata(path) else { return 0 };
    let mut n = m.blocks() * 512;
    if m.is_dir() {
        for e in std::fs::read_dir(path).into_iter().flatten().flatten() {
            n += disk_usage(&e.path());
        }
    }
    n
}

/// Names of directories being removed: a sweep finishes any it finds.
const TRASH: &str = ".trash-";

/// Remove a directory tree so that a kill at any instant leaves either the whole tree or a
/// `.trash-*` name the next sweep removes: never a half-removed tree under its real name (which
/// could look like a create that has not taken its lock yet).
pub fn remove_tree(dir: &Path) {
    let Some(name) = dir.file_name().and_then(|n| n.to_str()) else { return };
    let trash = dir.with_file_name(format!("{TRASH}{name}-{}", crate::clock::now_ns()));
    match std::fs::rename(dir, &trash) {
        Ok(()) => {
            let _ = std::fs::remove_dir_all(&trash);
        }
        Err(_) => {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Finish removals a killed call started (`remove_tree`).
pub fn empty_trash(root: &Path) {
    for e in std::fs::read_dir(root).into_iter().flatten().flatten() {
        if e.file_name().to_string_lossy().starts_with(TRASH) {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

//! Environments: read-only ext4 base images that workspaces and runs boot from.
//!
//! Layout under the cache dir: `environments/<slug>/<version>-<digest12>/{base.ext4,env.json}`
//! plus `environments/<slug>/current` naming the install in use. An install's identity is the
//! sha256 of the rootfs archive it was made from; a base is never rebuilt in place (overlays
//! depend on its exact bytes), so a rebuild is a new directory and old ones stay until pruned.

pub mod build;
pub mod catalog;

use crate::error::{Context, Error, Result};
use crate::paths::Paths;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub use catalog::{lookup, CatalogEntry, CATALOG};

/// What `env.json` records about an installed environment.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Installed {
    pub name: String,
    pub version: String,
    /// sha256 of the rootfs archive the image was made from.
    pub digest: String,
    pub source: String,
    pub installed_at: u64,
    /// Bytes the image occupies on disk (it is sparse).
    pub size_bytes: u64,
    pub packages: Vec<String>,
    #[serde(skip)]
    pub dir: PathBuf,
}

impl Installed {
    pub fn image(&self) -> PathBuf {
        self.dir.join("base.ext4")
    }
}

pub fn env_root(paths: &Paths, name: &str) -> PathBuf {
    paths.environments().join(catalog::slug(name))
}

/// The install currently in use for `name`, if any and intact.
pub fn installed(paths: &Paths, name: &str) -> Option<Installed> {
    let root = env_root(paths, name);
    let current = std::fs::read_to_string(root.join("current")).ok()?;
    load(&root.join(current.trim()))
}

pub fn load(dir: &Path) -> Option<Installed> {
    let mut m: Installed = serde_json::from_slice(&std::fs::read(dir.join("env.json")).ok()?).ok()?;
    m.dir = dir.to_path_buf();
    m.image().is_file().then_some(m)
}

/// Return the installed environment, building it first if needed. Two processes asking at
/// once build it once: the second waits on the lock and then finds the install.
pub fn ensure(rt: &crate::runtime::Runtime, name: &str, progress: &dyn Fn(&str)) -> Result<Installed> {
    let entry = lookup(name)?;
    if let Some(i) = installed(&rt.paths, name).filter(|i| i.version == entry.version) {
        return Ok(i);
    }
    let root = env_root(&rt.paths, name);
    crate::paths::private_dir(&root)?;
    let _lock = lock(&root.join(".lock"))?;
    if let Some(i) = installed(&rt.paths, name).filter(|i| i.version == entry.version) {
        return Ok(i);
    }
    build::build(rt, entry, &root, progress)
}

/// An exclusive advisory lock held until the returned file is dropped.
pub fn lock(path: &Path) -> Result<std::fs::File> {
    use std::os::fd::AsRawFd;
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .ctx(format!("opening lock {}", path.display()))?;
    // SAFETY: flock on an open fd.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(Error::io(format!("locking {}", path.display()), std::io::Error::last_os_error()));
    }
    Ok(f)
}

//! Environments: read-only ext4 base images that workspaces and runs boot from.
//!
//! Two sources, one install pipeline (`build.rs`): catalog recipes built from the Debian
//! archive (`catalog.rs`), and OCI images pulled from a registry (`oci.rs`; any name with a
//! `/` in it is an image reference). Both end as `base.ext4` written by a builder VM.
//!
//! Layout under the cache dir: `environments/<slug>/<dir>/{base.ext4,env.json}` plus
//! `environments/<slug>/current` naming the install in use, and `.lock` serialising builds.
//! `<dir>` is `<version>-<digest12>` for catalog builds (digest of the rootfs archive) and
//! `<digest12>` of the image manifest for OCI images. A base is never rebuilt in place
//! (overlays depend on its exact bytes), so a rebuild is a new directory; old ones stay
//! until `prune` finds nothing uses them. Builds happen in `.partial-*` directories that are
//! renamed into place, so an interrupted build leaves nothing that looks installed.

pub mod build;
pub mod catalog;
pub mod inspect;
pub mod oci;
pub mod prune;

use crate::error::Result;
use crate::paths::Paths;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub use catalog::{lookup, CatalogEntry, CATALOG};
pub use inspect::{EnvironmentDetails, InstallSummary};
pub use oci::{ImageConfig, OciInfo, PullOptions};
pub use prune::{PruneEntry, PruneReport};

/// Where an environment comes from. Serialized as `catalog` / `oci`, the words `env.json`
/// manifests on disk and every JSON output have always used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum EnvKind {
    /// Built by pyro from the Debian archive (see `env::catalog`).
    #[default]
    Catalog,
    /// Pulled from an OCI registry.
    Oci,
}

impl EnvKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EnvKind::Catalog => "catalog",
            EnvKind::Oci => "oci",
        }
    }
}

impl std::fmt::Display for EnvKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What `env.json` records about an installed environment.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Installed {
    pub name: String,
    /// The catalog version, or the first 12 hex digits of an image's manifest digest.
    pub version: String,
    /// Identity: sha256 of the rootfs archive (catalog) or of the image manifest (OCI).
    pub digest: String,
    pub source: String,
    pub installed_at: u64,
    /// Bytes the image occupies on disk (it is sparse).
    pub size_bytes: u64,
    pub packages: Vec<String>,
    /// Manifests written before OCI support have no kind: they are catalog builds.
    #[serde(default)]
    pub kind: EnvKind,
    /// The guest kernel the builder VM ran (every environment boots the same cached kernel).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<String>,
    /// Registry, digests, layers and image config of an OCI image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oci: Option<OciInfo>,
    #[serde(skip)]
    pub dir: PathBuf,
    /// Set when this call built or pulled the install (false when it was already there).
    #[serde(skip)]
    pub fresh: bool,
}

/// `env pull`: the install, and whether this call built or pulled it.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct PullReport {
    pub name: String,
    pub version: String,
    pub kind: EnvKind,
    pub digest: String,
    pub size_bytes: u64,
    pub source: String,
    pub installed: bool,
    /// False when it was already installed.
    pub built: bool,
    pub path: PathBuf,
    /// Images only.
    pub manifest_digest: Option<String>,
    pub index_digest: Option<String>,
}

impl From<&Installed> for PullReport {
    fn from(i: &Installed) -> Self {
        PullReport {
            name: i.name.clone(),
            version: i.version.clone(),
            kind: i.kind,
            digest: i.digest.clone(),
            size_bytes: i.size_bytes,
            source: i.source.clone(),
            installed: true,
            built: i.fresh,
            path: i.dir.clone(),
            manifest_digest: i.oci.as_ref().map(|o| o.manifest_digest.clone()),
            index_digest: i.oci.as_ref().and_then(|o| o.index_digest.clone()),
        }
    }
}

impl Installed {
    /// The read-only ext4 base image VMs of this environment run on.
    pub fn image(&self) -> PathBuf {
        self.dir.join("base.ext4")
    }

    /// What the VM layer needs of this install (templates, spares).
    pub fn base(&self) -> crate::vm::template::BaseImage {
        crate::vm::template::BaseImage { name: self.name.clone(), digest: self.digest.clone(), dir: self.dir.clone() }
    }
}

/// True for names that are OCI image references rather than catalog names.
pub fn is_oci_name(name: &str) -> bool {
    name.contains('/')
}

/// The name an environment is stored and shown under: catalog names as they are, image
/// references canonicalised (`docker.io/library/python:3.12`, `:latest` added).
pub fn canonical_name(name: &str) -> Result<String> {
    if is_oci_name(name) {
        Ok(oci::parse(name, true)?.name)
    } else {
        Ok(lookup(name)?.name.to_string())
    }
}

/// Check a name without touching the network or the disk: a catalog name, or a well-formed
/// image reference. The error for an unknown name lists the catalog.
pub fn check_name(name: &str) -> Result<()> {
    canonical_name(name).map(|_| ())
}

pub fn env_root(paths: &Paths, name: &str) -> PathBuf {
    if is_oci_name(name) {
        paths.environments().join(oci::slug(name))
    } else {
        paths.environments().join(catalog::slug(name))
    }
}

/// The install currently in use for `name`, if any and intact.
pub fn installed(paths: &Paths, name: &str) -> Option<Installed> {
    let name = canonical_name(name).ok()?;
    let root = env_root(paths, &name);
    let current = std::fs::read_to_string(root.join("current")).ok()?;
    load(&root.join(current.trim()))
}

pub fn load(dir: &Path) -> Option<Installed> {
    let mut m: Installed = serde_json::from_slice(&std::fs::read(dir.join("env.json")).ok()?).ok()?;
    m.dir = dir.to_path_buf();
    m.image().is_file().then_some(m)
}

/// Every environment with a usable `current` install, catalog or not, sorted by name.
pub fn all_installed(paths: &Paths) -> Vec<Installed> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(paths.environments()).into_iter().flatten().flatten() {
        let Ok(current) = std::fs::read_to_string(e.path().join("current")) else { continue };
        if let Some(i) = load(&e.path().join(current.trim())) {
            out.push(i);
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// Return the installed environment, building or pulling it first if needed. Two processes
/// asking at once build it once: the second waits on the lock and then finds the install.
/// An OCI image that is installed is used as it is (no registry round trip); `pull` re-checks
/// the tag.
/// Whether `name` can be used without pulling from an image registry: a catalog entry (built
/// from the Debian archive when missing) or an image that is installed already.
pub fn usable_without_pull(paths: &Paths, name: &str) -> bool {
    if !is_oci_name(name) {
        return lookup(name).is_ok();
    }
    oci::parse(name, true).ok().and_then(|r| installed(paths, &r.name)).is_some()
}

pub fn ensure(rt: &crate::runtime::Runtime, name: &str, progress: &dyn Fn(&str)) -> Result<Installed> {
    if is_oci_name(name) {
        // An installed image is used whatever scheme the name carries (it may have been pulled
        // with --insecure); pulling it from here never allows plain HTTP off loopback.
        if let Some(i) = installed(&rt.paths, &oci::parse(name, true)?.name) {
            return Ok(i);
        }
        return oci::pull(&rt.paths, &|| Ok(rt), &oci::parse(name, false)?, progress);
    }
    let entry = lookup(name)?;
    if let Some(i) = installed(&rt.paths, name).filter(|i| i.version == entry.version) {
        return Ok(i);
    }
    let root = env_root(&rt.paths, name);
    crate::paths::private_dir(&root)?;
    let _lock = lock_reporting(&root, name, progress)?;
    if let Some(i) = installed(&rt.paths, name).filter(|i| i.version == entry.version) {
        return Ok(i);
    }
    build::clean_partials(&root);
    build::build(rt, entry, &root, progress)
}

/// Take an environment's build lock, saying so when another process holds it.
pub fn lock_reporting(root: &Path, name: &str, progress: &dyn Fn(&str)) -> Result<std::fs::File> {
    // A concurrent `prune` may just have removed an empty root.
    crate::paths::private_dir(root)?;
    let path = root.join(".lock");
    if let Some(f) = crate::lockfile::try_lock(&path)? {
        return Ok(f);
    }
    progress(&format!("env: another process is installing {name}; waiting for it"));
    crate::lockfile::lock(&path)
}

/// A progress line with a fraction in it, which front ends can draw as a bar:
/// `env: downloading layers: 12.5 / 40.0 MiB`.
pub fn progress_line(phase: &str, done: u64, total: u64) -> String {
    let mib = |b: u64| b as f64 / (1u64 << 20) as f64;
    format!("{phase}: {:.1} / {:.1} MiB", mib(done), mib(total.max(done)))
}

/// The phase, bytes done and bytes total of a line made by `progress_line`.
pub fn parse_progress(line: &str) -> Option<(&str, u64, u64)> {
    let (phase, rest) = line.rsplit_once(": ")?;
    let (done, total) = rest.strip_suffix(" MiB")?.split_once(" / ")?;
    let b = |s: &str| s.trim().parse::<f64>().ok().map(|v| (v * (1u64 << 20) as f64) as u64);
    Some((phase, b(done)?, b(total)?))
}

/// Emits fraction lines at most every quarter second (and always the last one).
pub(crate) struct Throttle {
    last: Option<std::time::Instant>,
}

impl Throttle {
    pub fn new() -> Self {
        Throttle { last: None }
    }

    pub fn tick(&mut self, progress: &dyn Fn(&str), phase: &str, done: u64, total: u64) {
        let now = std::time::Instant::now();
        let due = match self.last {
            Some(t) => now.duration_since(t).as_millis() >= 250,
            None => true,
        };
        if done >= total || due {
            self.last = Some(now);
            progress(&progress_line(phase, done, total));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_keep_the_words_on_disk() {
        let old = r#"{"name":"debian:12","version":"1","digest":"d","source":"s","installed_at":0,"size_bytes":0,"packages":[]}"#;
        assert_eq!(serde_json::from_str::<Installed>(old).unwrap().kind, EnvKind::Catalog);
        let oci = old.replace(r#""packages":[]"#, r#""packages":[],"kind":"oci""#);
        let i: Installed = serde_json::from_str(&oci).unwrap();
        assert_eq!(i.kind, EnvKind::Oci);
        assert!(serde_json::to_string(&i).unwrap().contains(r#""kind":"oci""#));
    }

    #[test]
    fn progress_lines_round_trip() {
        let l = progress_line("env: downloading layers", 3 << 20, 10 << 20);
        assert_eq!(l, "env: downloading layers: 3.0 / 10.0 MiB");
        let (phase, done, total) = parse_progress(&l).unwrap();
        assert_eq!((phase, done, total), ("env: downloading layers", 3 << 20, 10 << 20));
        assert!(parse_progress("env: booting the builder VM").is_none());
    }

    #[test]
    fn names_are_catalog_or_references() {
        assert!(check_name("debian:12").is_ok());
        assert_eq!(check_name("nosuch").unwrap_err().code, crate::Code::NotFound);
        assert_eq!(canonical_name("127.0.0.1:5000/test/img").unwrap(), "127.0.0.1:5000/test/img:latest");
        assert_eq!(canonical_name("docker.io/library/python:3.12").unwrap(), "docker.io/library/python:3.12");
        assert_eq!(check_name("127.0.0.1:5000/Bad Name").unwrap_err().code, crate::Code::InvalidArgument);
    }
}

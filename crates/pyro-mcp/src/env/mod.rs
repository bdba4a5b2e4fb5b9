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
pub mod manifest;
pub mod oci;
pub mod progress;
pub mod prune;

use crate::error::Result;
use crate::paths::Paths;
use serde::Serialize;
use std::path::PathBuf;

pub use catalog::{lookup, CatalogEntry, CATALOG};
pub use inspect::{EnvironmentDetails, InstallSummary};
pub use manifest::{load, EnvKind, ImageConfig, Installed, OciInfo};
pub use oci::PullOptions;
pub use progress::{lock_reporting, parse_progress};
pub use prune::{PruneEntry, PruneReport};

/// `env pull`: the install, and whether this call built or pulled it.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct PullReport {
    /// The environment's name, e.g. `debian:12` or an image reference.
    pub name: String,
    /// The catalog version, or the first 12 hex digits of an image's manifest digest.
    pub version: String,
    /// Built from the catalog, or pulled from an OCI registry.
    pub kind: EnvKind,
    /// The install's identity: sha256 of the rootfs archive (catalog) or of the image manifest
    /// (OCI).
    pub digest: String,
    /// Bytes the base image occupies on disk (it is sparse).
    pub size_bytes: u64,
    /// Where it came from, in one line: the Debian mirror and suite, or the image and its layers.
    pub source: String,
    /// Always true: the environment is installed when the report is made.
    pub installed: bool,
    /// False when it was already installed.
    pub built: bool,
    /// The install's directory on the host.
    pub path: PathBuf,
    /// Images only.
    pub manifest_digest: Option<String>,
    /// For images: `sha256:...` of the image index the manifest was chosen from, if there was one.
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
        use super::progress::progress_line;
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

//! `env inspect`: everything pyro knows about one environment, without building or pulling:
//! the catalog recipe or the image reference, the current install (source, digests, size,
//! packages, layers and image config), every other install still on disk and who uses it,
//! and the guest kernel it boots with.

use super::manifest::EnvKind;
use super::{canonical_name, catalog, env_root, is_oci_name, load, Installed};
use crate::error::{Error, Result};
use crate::paths::Paths;
use serde::Serialize;

/// One install of an environment on disk, current or not.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct InstallSummary {
    /// The install's directory on the host.
    pub path: String,
    /// The install's version.
    pub version: String,
    /// The install's identity (sha256 of its rootfs archive or image manifest).
    pub digest: String,
    /// When it was installed, in seconds since the Unix epoch.
    pub installed_at: u64,
    /// Bytes its base image occupies on disk (it is sparse).
    pub size_bytes: u64,
    /// It is the install new workspaces use.
    pub current: bool,
    /// Who depends on it (`workspace <id>`, `vm <id>`); absent when nothing does.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub used_by: Vec<String>,
}

/// `env inspect`.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct EnvironmentDetails {
    /// The environment's name, as given (catalog names canonicalized).
    pub name: String,
    /// A catalog recipe or an OCI image.
    pub kind: super::EnvKind,
    /// The catalog's one-line description; absent for images.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The version the catalog builds now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub catalog_version: Option<String>,
    /// Packages the catalog recipe asks for (the install lists everything that came in).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub recipe_packages: Vec<String>,
    /// An install of it is on disk.
    pub installed: bool,
    /// The install in use, with its env.json.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current: Option<Installed>,
    /// The current install's directory on the host; absent when not installed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Every install on disk (the current one too).
    pub installs: Vec<InstallSummary>,
    /// The guest kernel VMs boot (shared by all environments), if cached.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernel: Option<String>,
    /// Warm templates of the current install (newest first), `current` when this host's
    /// runtime can restore them.
    pub templates: Vec<crate::vm::template::TemplateInfo>,
}

pub fn inspect(paths: &Paths, rt: Option<&crate::runtime::Runtime>, name: &str) -> Result<EnvironmentDetails> {
    let name = canonical_name(name)?;
    let entry = catalog::CATALOG.iter().find(|e| e.name == name);
    let root = env_root(paths, &name);
    let current_dir = std::fs::read_to_string(root.join("current")).ok().map(|s| s.trim().to_string());
    let current = current_dir.as_ref().and_then(|c| load(&root.join(c)));
    let used = super::prune::users(paths);
    let mut installs = Vec::new();
    for e in std::fs::read_dir(&root).into_iter().flatten().flatten() {
        let Some(i) = load(&e.path()) else { continue };
        let canon = std::fs::canonicalize(e.path()).unwrap_or(e.path());
        installs.push(InstallSummary {
            path: e.path().display().to_string(),
            version: i.version.clone(),
            digest: i.digest.clone(),
            installed_at: i.installed_at,
            size_bytes: i.size_bytes,
            current: current_dir.as_deref() == e.file_name().to_str(),
            used_by: used.get(&canon).cloned().unwrap_or_default(),
        });
    }
    installs.sort_by_key(|i| i.installed_at);
    if entry.is_none() && current.is_none() && installs.is_empty() {
        return Err(
            Error::not_found(format!("{name} is not installed")).hint(format!("pull it first: pyro env pull {name}"))
        );
    }
    let kernel =
        crate::kernel::cached_kernel(&paths.kernels()).map(|k| format!("{} ({} {})", k.release, k.package, k.version));
    Ok(EnvironmentDetails {
        kind: if is_oci_name(&name) { EnvKind::Oci } else { EnvKind::Catalog },
        description: entry.map(|e| e.description.to_string()),
        catalog_version: entry.map(|e| e.version.to_string()),
        recipe_packages: entry.map(|e| e.packages.iter().map(|p| p.to_string()).collect()).unwrap_or_default(),
        installed: current.is_some(),
        path: current.as_ref().map(|c| c.dir.display().to_string()),
        installs,
        kernel,
        templates: current.as_ref().map(|c| crate::vm::template::list(rt, &c.base())).unwrap_or_default(),
        current,
        name,
    })
}

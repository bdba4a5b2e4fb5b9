//! What an install of an environment records (`manifest.json` in its dir): its kind, identity
//! (digest), packages, kernel and, for an OCI image, its registry, layers and config; and
//! reading one back.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

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

pub fn load(dir: &Path) -> Option<Installed> {
    let mut m: Installed = serde_json::from_slice(&std::fs::read(dir.join("env.json")).ok()?).ok()?;
    m.dir = dir.to_path_buf();
    m.image().is_file().then_some(m)
}

/// What env.json records about an image.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct OciInfo {
    pub reference: String,
    pub registry: String,
    pub repository: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// `sha256:...` of the image manifest (the environment's identity).
    pub manifest_digest: String,
    /// `sha256:...` of the image index the manifest was chosen from, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index_digest: Option<String>,
    pub config_digest: String,
    pub platform: String,
    pub layers: Vec<LayerInfo>,
    pub config: ImageConfig,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct LayerInfo {
    pub digest: String,
    pub size: u64,
    pub media_type: String,
    /// sha256 of the uncompressed layer, from the image config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diff_id: Option<String>,
}

/// The parts of the image config pyro records (it does not apply them: commands run as root
/// in /workspace with pyro's environment).
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ImageConfig {
    #[serde(default)]
    pub env: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
}

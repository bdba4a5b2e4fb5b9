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
    /// The kind's name, as manifests and JSON outputs write it (`catalog` or `oci`).
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
    /// The environment's name, e.g. `debian:12` or an image reference.
    pub name: String,
    /// The catalog version, or the first 12 hex digits of an image's manifest digest.
    pub version: String,
    /// Identity: sha256 of the rootfs archive (catalog) or of the image manifest (OCI).
    pub digest: String,
    /// Where it came from, in one line: the Debian mirror and suite, or the image and its layers.
    pub source: String,
    /// When it was installed, in seconds since the Unix epoch.
    pub installed_at: u64,
    /// Bytes the image occupies on disk (it is sparse).
    pub size_bytes: u64,
    /// Every package installed in the image (for an OCI image, from its dpkg or apk database).
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
    /// The install's directory on the host (not stored: it is where `env.json` was read).
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
    /// The image reference as the user gave it.
    pub reference: String,
    /// The registry it was pulled from, e.g. `docker.io`.
    pub registry: String,
    /// The repository in that registry, e.g. `library/debian`.
    pub repository: String,
    /// The tag the reference named, if it named one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// `sha256:...` of the image manifest (the environment's identity).
    pub manifest_digest: String,
    /// `sha256:...` of the image index the manifest was chosen from, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index_digest: Option<String>,
    /// `sha256:...` of the image config.
    pub config_digest: String,
    /// The platform the manifest was chosen for (`linux/amd64`).
    pub platform: String,
    /// The image's layers, bottom first, as they were applied.
    pub layers: Vec<LayerInfo>,
    /// What pyro recorded of the image config.
    pub config: ImageConfig,
    /// When the image was created, as its config says (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
}

/// One layer of an OCI image.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct LayerInfo {
    /// `sha256:...` of the compressed layer blob.
    pub digest: String,
    /// Bytes of the compressed layer blob.
    pub size: u64,
    /// The blob's media type (gzip, zstd or uncompressed tar).
    pub media_type: String,
    /// sha256 of the uncompressed layer, from the image config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diff_id: Option<String>,
}

/// The parts of the image config pyro records (it does not apply them: commands run as root
/// in /workspace with pyro's environment).
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ImageConfig {
    /// The image's environment variables, `NAME=value`.
    #[serde(default)]
    pub env: Vec<String>,
    /// The working directory the image names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// The user the image names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The image's entrypoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    /// The image's default command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
}

//! OCI images as environments: `pyro env pull REGISTRY/REPO[:TAG|@DIGEST]`.
//!
//! 1. The reference is parsed and the transport decided before any connection: registries on
//!    loopback addresses speak plain HTTP (as Docker allows), any other needs TLS unless the
//!    caller passes `insecure` (then `http://REGISTRY/...` is allowed and TLS certificates are
//!    not checked).
//! 2. The manifest is fetched anonymously with `oci-client` (bearer tokens when the registry
//!    asks for them); an image index is resolved to its linux/amd64 image. Every manifest,
//!    the config and each layer blob is checked against its sha256 digest and size; the
//!    identity of the environment is the image manifest's digest.
//! 3. Layers are downloaded into the install's `.partial-*` directory, then a builder VM
//!    (root inside the guest) applies them in order onto a blank ext4 image: each layer is
//!    decompressed on the host (gzip, zstd or plain tar), checked against the config's
//!    `diff_id`, and streamed to the agent, which applies whiteouts and cannot write outside
//!    the rootfs (`Request::Unpack { oci_layer: true }`).
//! 4. The install is renamed into place like a catalog build (`build::install`).
//!
//! The image config (Env, WorkingDir, User, Entrypoint, Cmd) is recorded in env.json for
//! `inspect`; commands still run as root in /workspace with pyro's environment.

use super::build;
use super::manifest::{load, EnvKind, ImageConfig, Installed, LayerInfo, OciInfo};
use super::progress::{lock_reporting, progress_line, Throttle};
use crate::error::{Context, Error, Result};
use crate::paths::Paths;
use crate::runtime::Runtime;
use crate::text::clip;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::Reference;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

const MT_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const MT_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const MT_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const MT_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Largest manifest or config we accept.
const MAX_JSON: usize = 8 << 20;

/// Options for pulling an image.
#[derive(Debug, Clone, Default)]
pub struct PullOptions {
    /// Allow plain HTTP (`http://REGISTRY/...`) to registries that are not on loopback, and
    /// accept TLS certificates that do not verify.
    pub insecure: bool,
}

/// A parsed reference and how to reach its registry.
#[derive(Debug, Clone)]
pub struct OciRef {
    /// Canonical reference: the environment's name.
    pub name: String,
    pub reference: Reference,
    pub plain_http: bool,
    pub insecure: bool,
}

/// Parse `[http://|https://]REGISTRY/REPO[:TAG][@sha256:HEX]` and decide the transport. Never
/// touches the network.
pub fn parse(input: &str, insecure: bool) -> Result<OciRef> {
    let (scheme, rest) = match input.split_once("://") {
        Some((s @ ("http" | "https"), r)) => (Some(s), r),
        Some(_) => {
            return Err(Error::invalid(format!("malformed image reference '{}': unknown scheme", clip(input, 120)))
                .hint("use REGISTRY/REPOSITORY[:TAG|@sha256:DIGEST], e.g. docker.io/library/python:3.12"))
        }
        None => (None, input),
    };
    let malformed = |why: String| {
        Error::invalid(format!("malformed image reference '{}': {why}", clip(input, 120)))
            .hint("use REGISTRY/REPOSITORY[:TAG|@sha256:DIGEST], e.g. docker.io/library/python:3.12")
    };
    if rest.is_empty() || rest.len() > 1024 || rest.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(malformed("empty, too long, or contains spaces".into()));
    }
    let reference = Reference::try_from(rest).map_err(|e| malformed(e.to_string()))?;
    if let Some(d) = reference.digest() {
        if !d.strip_prefix("sha256:").is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit())) {
            return Err(malformed("only sha256 digests are supported".into()));
        }
    }
    let registry = reference.registry().to_string();
    let loopback = is_loopback(&registry);
    let plain_http = match scheme {
        Some("https") => false,
        Some(_) if loopback || insecure => true,
        Some(_) => {
            return Err(Error::invalid(format!(
                "registry {registry} is not on a loopback address: plain HTTP to it needs --insecure"
            ))
            .hint("use https:// (the default), or pass --insecure if you trust the network path"))
        }
        None => loopback,
    };
    Ok(OciRef { name: reference.whole(), reference, plain_http, insecure })
}

/// `localhost`, `127.0.0.0/8` or `[::1]`, with or without a port.
pub fn is_loopback(registry: &str) -> bool {
    let host = if let Some(r) = registry.strip_prefix('[') {
        r.split(']').next().unwrap_or("")
    } else {
        match registry.rsplit_once(':') {
            Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => registry,
        }
    };
    host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Directory name for an image under `environments/`: readable, bounded, collision-free.
pub fn slug(name: &str) -> String {
    let readable: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '.' { c } else { '_' })
        .take(80)
        .collect();
    format!("{readable}-{}", &hex::encode(Sha256::digest(name.as_bytes()))[..8])
}

/// How long a registry may stay silent (connect, or between bytes) before we give up.
fn io_timeout() -> Duration {
    Duration::from_secs(
        std::env::var("PYRO_REGISTRY_TIMEOUT_S").ok().and_then(|v| v.parse().ok()).filter(|v| *v > 0).unwrap_or(30),
    )
}

fn client(r: &OciRef) -> Result<oci_client::Client> {
    // reqwest is built without a default TLS crypto provider; install ring's once per process.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let protocol = if r.plain_http {
        ClientProtocol::HttpsExcept(vec![r.reference.resolve_registry().to_string()])
    } else {
        ClientProtocol::Https
    };
    let config = ClientConfig {
        protocol,
        accept_invalid_certificates: r.insecure,
        platform_resolver: Some(Box::new(oci_client::client::linux_amd64_resolver)),
        connect_timeout: Some(io_timeout().min(Duration::from_secs(10))),
        read_timeout: Some(io_timeout()),
        user_agent: concat!("pyro-mcp/", env!("CARGO_PKG_VERSION")),
        ..Default::default()
    };
    oci_client::Client::try_from(config).map_err(|e| Error::internal(format!("cannot set up the registry client: {e}")))
}

/// One line for a registry error, with its cause chain.
fn registry_error(r: &OciRef, what: &str, e: oci_client::errors::OciDistributionError) -> Error {
    use oci_client::errors::{OciDistributionError as E, OciErrorCode as C};
    let reg = r.reference.registry();
    let mut chain = e.to_string();
    let mut src = std::error::Error::source(&e);
    while let Some(s) = src {
        let t = s.to_string();
        if !chain.contains(&t) {
            chain.push_str(": ");
            chain.push_str(&t);
        }
        src = s.source();
    }
    match &e {
        E::RequestError(re) if re.is_timeout() => {
            Error::timeout(format!("registry {reg} did not answer within {} s while {what}", io_timeout().as_secs()))
                .hint("check the registry address and your network; PYRO_REGISTRY_TIMEOUT_S changes the limit")
        }
        E::RequestError(re) if re.is_connect() => {
            Error::guest(format!("cannot reach registry {reg} while {what}: {}", clip(&chain, 400)))
                .hint("check the registry address and your network (registries on loopback use plain HTTP)")
        }
        E::ImageManifestNotFoundError(_) => Error::not_found(format!("{} was not found in registry {reg}", r.name)),
        E::RegistryError { envelope, .. }
            if envelope
                .errors
                .iter()
                .any(|x| matches!(x.code, C::ManifestUnknown | C::NameUnknown | C::NotFound | C::BlobUnknown)) =>
        {
            Error::not_found(format!("{} was not found in registry {reg}", r.name))
        }
        E::ServerError { code: 404, .. } => Error::not_found(format!("{} was not found in registry {reg}", r.name)),
        E::UnauthorizedError { .. } | E::AuthenticationFailure(_) => Error::not_found(format!(
            "registry {reg} refused anonymous access to {} (pyro pulls public images only)",
            r.name
        )),
        E::DigestError(_) => Error::internal(format!("{} failed digest verification while {what}: {chain}", r.name)),
        _ => Error::internal(format!("registry {reg}: {what} failed: {}", clip(&chain, 400))),
    }
}

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

fn verify(what: &str, body: &[u8], digest: &str, size: Option<u64>) -> Result<()> {
    let got = format!("sha256:{}", sha256_hex(body));
    if got != digest {
        return Err(Error::internal(format!(
            "{what} failed verification: expected {digest}, the registry sent {got}; nothing was installed"
        )));
    }
    if let Some(s) = size.filter(|s| *s != body.len() as u64) {
        return Err(Error::internal(format!(
            "{what} failed verification: expected {s} bytes, the registry sent {}; nothing was installed",
            body.len()
        )));
    }
    Ok(())
}

#[derive(Debug, Deserialize)]
struct Descriptor {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    digest: String,
    size: i64,
    #[serde(default)]
    platform: Option<Platform>,
    #[serde(default)]
    urls: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
struct Platform {
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    os: String,
    #[serde(default)]
    variant: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Manifest {
    #[serde(rename = "schemaVersion")]
    schema_version: i64,
    #[serde(rename = "mediaType", default)]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<Vec<Descriptor>>,
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Option<Vec<Descriptor>>,
}

/// The image chosen for linux/amd64, with its verified manifest.
struct Resolved {
    manifest_digest: String,
    index_digest: Option<String>,
    config: Descriptor,
    layers: Vec<Descriptor>,
}

fn check_digest_syntax(d: &str) -> Result<()> {
    match d.strip_prefix("sha256:") {
        Some(h) if h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) => Ok(()),
        _ => Err(Error::internal(format!("unsupported or malformed digest '{}' in the manifest", clip(d, 120)))),
    }
}

async fn resolve(c: &oci_client::Client, r: &OciRef) -> Result<Resolved> {
    let accepted = [MT_OCI_MANIFEST, MT_DOCKER_MANIFEST, MT_OCI_INDEX, MT_DOCKER_LIST];
    let (body, _) = c
        .pull_manifest_raw(&r.reference, &RegistryAuth::Anonymous, &accepted)
        .await
        .map_err(|e| registry_error(r, "fetching the manifest", e))?;
    if body.len() > MAX_JSON {
        return Err(Error::limit("the image manifest is too large"));
    }
    let top = format!("sha256:{}", sha256_hex(&body));
    if let Some(d) = r.reference.digest() {
        verify("the manifest", &body, d, None)?;
    }
    let m: Manifest =
        serde_json::from_slice(&body).map_err(|e| Error::internal(format!("the image manifest is not valid: {e}")))?;
    let is_index =
        m.manifests.is_some() || matches!(m.media_type.as_deref(), Some(MT_OCI_INDEX) | Some(MT_DOCKER_LIST));
    let (m, manifest_digest, index_digest) = if is_index {
        let entries = m.manifests.unwrap_or_default();
        let amd64: Vec<&Descriptor> = entries
            .iter()
            .filter(|e| e.platform.as_ref().is_some_and(|p| p.os == "linux" && p.architecture == "amd64"))
            .collect();
        let Some(pick) = amd64.first() else {
            let have: Vec<String> = entries
                .iter()
                .filter_map(|e| e.platform.as_ref())
                .map(|p| match &p.variant {
                    Some(v) => format!("{}/{}/{v}", p.os, p.architecture),
                    None => format!("{}/{}", p.os, p.architecture),
                })
                .collect();
            return Err(Error::not_found(format!(
                "{} has no linux/amd64 image (it has: {})",
                r.name,
                if have.is_empty() { "none".into() } else { have.join(", ") }
            )));
        };
        check_digest_syntax(&pick.digest)?;
        let mref = r.reference.clone_with_digest(pick.digest.clone());
        let (inner, _) = c
            .pull_manifest_raw(&mref, &RegistryAuth::Anonymous, &[MT_OCI_MANIFEST, MT_DOCKER_MANIFEST])
            .await
            .map_err(|e| registry_error(r, "fetching the linux/amd64 manifest", e))?;
        verify("the linux/amd64 manifest", &inner, &pick.digest, Some(pick.size.max(0) as u64))?;
        let m: Manifest = serde_json::from_slice(&inner)
            .map_err(|e| Error::internal(format!("the image manifest is not valid: {e}")))?;
        (m, pick.digest.clone(), Some(top))
    } else {
        (m, top, None)
    };
    if m.schema_version != 2 || m.manifests.is_some() {
        return Err(Error::internal(format!("{} is not a schema 2 image manifest", r.name)));
    }
    let config = m.config.ok_or_else(|| Error::internal("the image manifest has no config"))?;
    let layers = m.layers.unwrap_or_default();
    check_digest_syntax(&config.digest)?;
    for l in &layers {
        check_digest_syntax(&l.digest)?;
        if l.urls.as_ref().is_some_and(|u| !u.is_empty()) || l.media_type.contains("foreign") {
            return Err(Error::invalid(format!("layer {} is a foreign layer; pyro cannot fetch it", l.digest)));
        }
        if compression(&l.media_type).is_none() {
            return Err(Error::invalid(format!("layer {} has an unsupported media type {}", l.digest, l.media_type)));
        }
    }
    Ok(Resolved { manifest_digest, index_digest, config, layers })
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Compression {
    /// Decide from the first bytes (Docker media types and `+gzip` in practice).
    Sniff,
    Zstd,
}

fn compression(media_type: &str) -> Option<Compression> {
    match media_type {
        "application/vnd.oci.image.layer.v1.tar"
        | "application/vnd.oci.image.layer.v1.tar+gzip"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
        | "application/vnd.docker.image.rootfs.diff.tar"
        | "application/vnd.docker.image.rootfs.diff.tar.gzip" => Some(Compression::Sniff),
        "application/vnd.oci.image.layer.v1.tar+zstd"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd" => Some(Compression::Zstd),
        _ => None,
    }
}

/// The uncompressed tar stream of a downloaded layer.
fn layer_reader(path: &Path, media_type: &str, counted: CountingReader) -> Result<Box<dyn Read>> {
    let mut head = [0u8; 4];
    let n = std::fs::File::open(path).and_then(|mut f| f.read(&mut head)).ctx("reading a layer")?;
    let buffered = std::io::BufReader::with_capacity(1 << 20, counted);
    let zstd_magic = n == 4 && head == [0x28, 0xb5, 0x2f, 0xfd];
    Ok(if compression(media_type) == Some(Compression::Zstd) || zstd_magic {
        Box::new(zstd::stream::read::Decoder::with_buffer(buffered).ctx("starting zstd")?)
    } else if n >= 2 && head[..2] == [0x1f, 0x8b] {
        Box::new(flate2::bufread::MultiGzDecoder::new(buffered))
    } else {
        Box::new(buffered)
    })
}

/// Counts bytes read from a file, for progress.
struct CountingReader {
    inner: std::fs::File,
    count: std::rc::Rc<std::cell::Cell<u64>>,
}

impl Read for CountingReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.set(self.count.get() + n as u64);
        Ok(n)
    }
}

/// Hashes what passes through (the layer's diff_id).
struct HashingReader<R> {
    inner: R,
    hash: Sha256,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
}

/// Run `f` (which does network I/O on its own tokio runtime) on a helper thread, passing the
/// lines it sends to `progress` on this thread: the SDK's progress sink need not be `Send`,
/// and this works whether or not the caller is itself inside a tokio runtime.
fn on_io_thread<T: Send>(
    progress: &dyn Fn(&str),
    f: impl FnOnce(mpsc::Sender<String>) -> Result<T> + Send,
) -> Result<T> {
    std::thread::scope(|s| {
        let (tx, rx) = mpsc::channel::<String>();
        let h = s.spawn(move || f(tx));
        for line in rx {
            progress(&line);
        }
        h.join().unwrap_or_else(|_| Err(Error::internal("the registry client panicked")))
    })
}

fn tokio_rt() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread().enable_all().build().ctx("starting the registry client")
}

/// Pull `r` and install it (or point `current` at it if that image is already installed).
/// `rt` is asked for the VM runtime only when a conversion is needed.
pub fn pull<'a>(
    paths: &Paths,
    rt: &dyn Fn() -> Result<&'a Runtime>,
    r: &OciRef,
    progress: &dyn Fn(&str),
) -> Result<Installed> {
    let started = std::time::Instant::now();
    progress(&format!("env: resolving {}", r.name));
    let c = client(r)?;
    let resolved = on_io_thread(progress, |_tx| {
        let rt = tokio_rt()?;
        rt.block_on(async {
            tokio::time::timeout(io_timeout() * 3, resolve(&c, r)).await.unwrap_or_else(|_| {
                Err(Error::timeout(format!(
                    "registry {} did not answer within {} s",
                    r.reference.registry(),
                    (io_timeout() * 3).as_secs()
                )))
            })
        })
    })?;
    let hexd = resolved.manifest_digest.trim_start_matches("sha256:").to_string();
    let dir_name = hexd[..12].to_string();
    let root = paths.environments().join(slug(&r.name));
    crate::paths::private_dir(&root)?;
    let up_to_date = |root: &Path| load(&root.join(&dir_name)).filter(|i| i.digest == hexd);
    let _lock = lock_reporting(&root, &r.name, progress)?;
    if let Some(i) = up_to_date(&root) {
        crate::paths::write_atomic(&root.join("current"), dir_name.as_bytes())?;
        progress(&format!("env: {} is installed ({})", r.name, resolved.manifest_digest));
        return Ok(i);
    }
    build::clean_partials(&root);
    let partial = build::new_partial(&root)?;
    let result = pull_in(&c, rt, r, &resolved, &root, &partial, &dir_name, progress);
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&partial);
    }
    let out = result?;
    progress(&format!("env: {} ready in {:.1} s", r.name, started.elapsed().as_secs_f64()));
    Ok(out)
}

#[derive(Debug, Default, Deserialize)]
struct ConfigFile {
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    os: String,
    #[serde(default)]
    created: Option<String>,
    #[serde(default)]
    config: Option<ContainerConfig>,
    #[serde(default)]
    rootfs: Option<RootFs>,
}

#[derive(Debug, Default, Deserialize)]
struct ContainerConfig {
    #[serde(rename = "Env", default)]
    env: Option<Vec<String>>,
    #[serde(rename = "WorkingDir", default)]
    working_dir: Option<String>,
    #[serde(rename = "User", default)]
    user: Option<String>,
    #[serde(rename = "Entrypoint", default)]
    entrypoint: Option<Vec<String>>,
    #[serde(rename = "Cmd", default)]
    cmd: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
struct RootFs {
    #[serde(default)]
    diff_ids: Vec<String>,
}

#[allow(clippy::too_many_arguments)]
fn pull_in<'a>(
    c: &oci_client::Client,
    rt: &dyn Fn() -> Result<&'a Runtime>,
    r: &OciRef,
    res: &Resolved,
    root: &Path,
    partial: &Path,
    dir_name: &str,
    progress: &dyn Fn(&str),
) -> Result<Installed> {
    let n = res.layers.len();
    let total: u64 = res.layers.iter().map(|l| l.size.max(0) as u64).sum();
    progress(&format!(
        "env: {} is {} ({n} layers, {:.1} MiB)",
        r.name,
        res.manifest_digest,
        total as f64 / (1u64 << 20) as f64
    ));
    // Layers, then at least as much again unpacked, plus the file system's own metadata.
    build::check_space(partial, total.saturating_mul(2) + (64 << 20), &format!("pulling {}", r.name))?;
    let config_bytes = on_io_thread(progress, |tx| {
        let trt = tokio_rt()?;
        trt.block_on(download_all(c, r, res, partial, &tx))
    })
    .map_err(|e| build::disk_hint(e, root))?;
    let cfg: ConfigFile = serde_json::from_slice(&config_bytes)
        .map_err(|e| Error::internal(format!("the image config is not valid: {e}")))?;
    if (!cfg.os.is_empty() && cfg.os != "linux") || (!cfg.architecture.is_empty() && cfg.architecture != "amd64") {
        return Err(Error::invalid(format!(
            "{} is a {}/{} image; pyro runs linux/amd64 guests",
            r.name, cfg.os, cfg.architecture
        )));
    }
    let diff_ids = cfg.rootfs.as_ref().map(|f| f.diff_ids.clone()).unwrap_or_default();
    if !diff_ids.is_empty() && diff_ids.len() != n {
        return Err(Error::internal(format!(
            "the image config lists {} layers but the manifest has {n}",
            diff_ids.len()
        )));
    }

    let rt = rt()?;
    progress("env: creating the ext4 base image");
    let image = partial.join("base.ext4");
    // Sparse: the virtual size is room for the image and what workspaces add.
    let gib = 8u64.max((total.saturating_mul(6) >> 30) + 2);
    build::blank_image(&image, gib).map_err(|e| build::disk_hint(e, root))?;
    progress("env: applying the layers in a builder VM");
    let mut vm = build::builder_vm(rt, &image)?;
    let consumed = std::rc::Rc::new(std::cell::Cell::new(0u64));
    let mut throttle = Throttle::new();
    let mut entries_total = 0u64;
    let mut done_before = 0u64;
    for (i, l) in res.layers.iter().enumerate() {
        let short = &l.digest[7..19];
        let path = partial.join(format!("layer-{i}"));
        consumed.set(0);
        let counted =
            CountingReader { inner: std::fs::File::open(&path).ctx("opening a layer")?, count: consumed.clone() };
        let mut reader = HashingReader { inner: layer_reader(&path, &l.media_type, counted)?, hash: Sha256::new() };
        let what = format!("layer {}/{n} (sha256:{short})", i + 1);
        let (entries, _) = vm
            .client
            .unpack_with("/target", true, true, &mut reader, &mut |_| {
                throttle.tick(progress, "env: applying layers", done_before + consumed.get(), total)
            })
            .map_err(|e| {
                let mut e2 = Error::new(e.code, format!("{what}: {}; nothing was installed", e.message));
                e2.hint = e.hint;
                build::disk_hint(e2, root)
            })?;
        // Drain what the tar reader did not need (padding), so the diff_id covers the stream.
        std::io::copy(&mut reader, &mut std::io::sink()).map_err(|e| Error::internal(format!("{what}: {e}")))?;
        if let Some(want) = diff_ids.get(i) {
            let got = format!("sha256:{}", hex::encode(reader.hash.finalize_reset()));
            if &got != want {
                return Err(Error::internal(format!(
                    "{what}: its uncompressed content is {got}, the image config says {want}; nothing was installed"
                )));
            }
        }
        entries_total += entries;
        done_before += l.size.max(0) as u64;
        throttle.tick(progress, "env: applying layers", done_before, total);
    }
    let packages = package_scan(partial, res);
    vm.client.shutdown()?;
    for i in 0..n {
        let _ = std::fs::remove_file(partial.join(format!("layer-{i}")));
    }
    let cc = cfg.config.unwrap_or_default();
    let info = OciInfo {
        reference: r.name.clone(),
        registry: r.reference.registry().to_string(),
        repository: r.reference.repository().to_string(),
        tag: r.reference.tag().map(str::to_string),
        manifest_digest: res.manifest_digest.clone(),
        index_digest: res.index_digest.clone(),
        config_digest: res.config.digest.clone(),
        platform: "linux/amd64".into(),
        layers: res
            .layers
            .iter()
            .enumerate()
            .map(|(i, l)| LayerInfo {
                digest: l.digest.clone(),
                size: l.size.max(0) as u64,
                media_type: l.media_type.clone(),
                diff_id: diff_ids.get(i).cloned(),
            })
            .collect(),
        config: ImageConfig {
            env: cc.env.unwrap_or_default(),
            working_dir: cc.working_dir.filter(|s| !s.is_empty()),
            user: cc.user.filter(|s| !s.is_empty()),
            entrypoint: cc.entrypoint,
            cmd: cc.cmd,
        },
        created: cfg.created,
    };
    let manifest = Installed {
        name: r.name.clone(),
        version: dir_name.to_string(),
        digest: res.manifest_digest.trim_start_matches("sha256:").to_string(),
        source: format!("oci {} (linux/amd64), {n} layers, {entries_total} entries", r.name),
        installed_at: 0,
        size_bytes: 0,
        packages,
        kind: EnvKind::Oci,
        kernel: Some(build::kernel_label(rt)),
        oci: Some(info),
        dir: Default::default(),
        fresh: true,
    };
    build::install(root, partial, dir_name, manifest)
}

/// Download the config (returned) and every layer into `partial/layer-N`, each checked
/// against its digest and size before anything uses it.
async fn download_all(
    c: &oci_client::Client,
    r: &OciRef,
    res: &Resolved,
    partial: &Path,
    tx: &mpsc::Sender<String>,
) -> Result<Vec<u8>> {
    use futures_util::StreamExt;
    let cfg_desc = &res.config;
    if cfg_desc.size < 0 || cfg_desc.size as usize > MAX_JSON {
        return Err(Error::limit("the image config is too large"));
    }
    let mut config = Vec::new();
    let mut s = c
        .pull_blob_stream(&r.reference, cfg_desc.digest.as_str())
        .await
        .map_err(|e| registry_error(r, "fetching the image config", e))?;
    while let Some(chunk) = s.next().await {
        let chunk = chunk.map_err(|e| Error::internal(format!("fetching the image config: {e}")))?;
        if config.len() + chunk.len() > MAX_JSON {
            return Err(Error::limit("the image config is too large"));
        }
        config.extend_from_slice(&chunk);
    }
    verify("the image config", &config, &cfg_desc.digest, Some(cfg_desc.size as u64))?;

    let n = res.layers.len();
    let total: u64 = res.layers.iter().map(|l| l.size.max(0) as u64).sum();
    let mut done = 0u64;
    let mut last = std::time::Instant::now();
    let _ = tx.send(progress_line("env: downloading layers", 0, total));
    for (i, l) in res.layers.iter().enumerate() {
        let want = l.size.max(0) as u64;
        let what = format!("layer {}/{n} ({})", i + 1, l.digest);
        let path = partial.join(format!("layer-{i}"));
        let mut f = std::io::BufWriter::new(std::fs::File::create(&path).ctx("creating a layer file")?);
        let mut h = Sha256::new();
        let mut got = 0u64;
        let mut s = c
            .pull_blob_stream(&r.reference, l.digest.as_str())
            .await
            .map_err(|e| registry_error(r, &format!("fetching {what}"), e))?;
        while let Some(chunk) = tokio::time::timeout(io_timeout(), s.next()).await.map_err(|_| {
            Error::timeout(format!(
                "registry {} stalled for {} s while sending {what}",
                r.reference.registry(),
                io_timeout().as_secs()
            ))
        })? {
            let chunk = chunk.map_err(|e| {
                // oci-client checks the digest at the end of the stream too.
                if e.to_string().to_ascii_lowercase().contains("digest") {
                    Error::internal(format!("{what} failed verification: {e}; nothing was installed"))
                } else {
                    Error::internal(format!("fetching {what}: {e}"))
                }
            })?;
            got += chunk.len() as u64;
            if got > want {
                return Err(Error::internal(format!(
                    "{what} failed verification: the registry sent more than the {want} bytes the manifest \
                     lists; nothing was installed"
                )));
            }
            h.update(&chunk);
            f.write_all(&chunk).map_err(|e| Error::io(format!("writing {what}"), e))?;
            if last.elapsed() >= Duration::from_millis(250) {
                last = std::time::Instant::now();
                let _ = tx.send(progress_line("env: downloading layers", done + got, total));
            }
        }
        f.flush().map_err(|e| Error::io(format!("writing {what}"), e))?;
        let digest = format!("sha256:{}", hex::encode(h.finalize()));
        if digest != l.digest {
            return Err(Error::internal(format!(
                "{what} failed verification: the registry sent content with {digest}; nothing was installed"
            )));
        }
        if got != want {
            return Err(Error::internal(format!(
                "{what} failed verification: expected {want} bytes, got {got}; nothing was installed"
            )));
        }
        done += got;
    }
    let _ = tx.send(progress_line("env: downloading layers", total, total));
    Ok(config)
}

/// Installed packages, from the topmost layer that has a dpkg status or apk database (a
/// whiteout of it in a higher layer means none).
fn package_scan(partial: &Path, res: &Resolved) -> Vec<String> {
    const DPKG: &str = "var/lib/dpkg/status";
    const APK: &str = "lib/apk/db/installed";
    for (i, l) in res.layers.iter().enumerate().rev() {
        let path = partial.join(format!("layer-{i}"));
        let Ok(f) = std::fs::File::open(&path) else { continue };
        let counted = CountingReader { inner: f, count: Default::default() };
        let Ok(reader) = layer_reader(&path, &l.media_type, counted) else { continue };
        let mut ar = tar::Archive::new(reader);
        let Ok(entries) = ar.entries() else { continue };
        for e in entries {
            let Ok(mut e) = e else { break };
            let p = e.path().map(|p| p.to_string_lossy().trim_start_matches("./").trim_start_matches('/').to_string());
            let Ok(p) = p else { continue };
            if p == DPKG || p == APK {
                let mut s = String::new();
                if e.read_to_string(&mut s).is_err() {
                    return Vec::new();
                }
                return if p == DPKG { build::parse_dpkg_status(&s) } else { parse_apk(&s) };
            }
            if p == "var/lib/dpkg/.wh.status" || p == "lib/apk/db/.wh.installed" {
                return Vec::new();
            }
        }
    }
    Vec::new()
}

fn parse_apk(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    for stanza in s.split("\n\n") {
        let field = |k: &str| stanza.lines().find_map(|l| l.strip_prefix(k));
        if let (Some(n), Some(v)) = (field("P:"), field("V:")) {
            out.push(format!("{n}={v}"));
        }
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transport_is_decided_before_connecting() {
        let r = parse("127.0.0.1:5000/test/img:v1", false).unwrap();
        assert!(r.plain_http);
        assert_eq!(r.name, "127.0.0.1:5000/test/img:v1");
        assert!(parse("localhost:5000/a/b", false).unwrap().plain_http);
        assert!(is_loopback("[::1]:5000") && is_loopback("127.1.2.3") && !is_loopback("10.0.0.1:5000"));
        assert!(!parse("docker.io/library/python:3.12", false).unwrap().plain_http);
        assert!(!parse("https://127.0.0.1:5000/a/b", false).unwrap().plain_http);
        let e = parse("http://192.0.2.1:5000/a/b:v1", false).unwrap_err();
        assert_eq!(e.code, crate::Code::InvalidArgument);
        assert!(e.message.contains("--insecure"), "{}", e.message);
        assert!(parse("http://192.0.2.1:5000/a/b:v1", true).unwrap().plain_http);
    }

    #[test]
    fn malformed_references_are_refused() {
        for bad in ["127.0.0.1:5000/Bad/Name", "a/b:", "a/b@sha256:xyz", "ftp://a/b", "a/ b", "/x"] {
            assert_eq!(parse(bad, false).unwrap_err().code, crate::Code::InvalidArgument, "{bad}");
        }
        let d = format!("127.0.0.1:1/a@sha256:{}", "a".repeat(64));
        assert_eq!(parse(&d, false).unwrap().reference.digest(), Some(&*format!("sha256:{}", "a".repeat(64))));
    }

    #[test]
    fn slugs_are_distinct_and_bounded() {
        assert_ne!(slug("r/a/b_c:t"), slug("r/a_b/c:t"));
        assert!(slug(&format!("r/{}:t", "a".repeat(300))).len() < 100);
    }

    #[test]
    fn layer_media_types() {
        assert_eq!(compression("application/vnd.oci.image.layer.v1.tar+zstd"), Some(Compression::Zstd));
        assert_eq!(compression("application/vnd.docker.image.rootfs.diff.tar.gzip"), Some(Compression::Sniff));
        assert_eq!(compression("application/vnd.oci.image.layer.v1.tar+bzip2"), None);
    }
}

//! A real OCI registry on loopback and tiny images built here, for the environment tests and
//! `make bench`: Debian's `docker-registry` on a free 127.0.0.1 port with a temporary storage
//! dir, images written as OCI layout directories (layers made with the tar crate around the
//! static `/bin/busybox` from `busybox-static`) and pushed with `skopeo copy`.

#![allow(dead_code)]

use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BUSYBOX: &str = "/bin/busybox";

/// Why the registry tests cannot run here, if they cannot.
pub fn missing_tools() -> Option<String> {
    for (tool, pkg) in [("docker-registry", "docker-registry"), ("skopeo", "skopeo")] {
        if !Command::new("sh").arg("-c").arg(format!("command -v {tool}")).output().is_ok_and(|o| o.status.success()) {
            return Some(format!("{tool} is not installed (apt-get install {pkg}; scripts/setup.sh does)"));
        }
    }
    if !Path::new(BUSYBOX).is_file() {
        return Some("/bin/busybox is not installed (apt-get install busybox-static)".into());
    }
    None
}

pub struct Registry {
    child: Child,
    pub port: u16,
    pub storage: tempfile::TempDir,
}

impl Registry {
    pub fn start() -> Registry {
        for _ in 0..5 {
            let storage = tempfile::Builder::new().prefix("pyro-test-registry").tempdir().unwrap();
            let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            let cfg = storage.path().join("config.yml");
            let data = storage.path().join("data");
            std::fs::write(
                &cfg,
                format!(
                    "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    \
                     rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
                    data.display()
                ),
            )
            .unwrap();
            let child = Command::new("docker-registry")
                .arg("serve")
                .arg(&cfg)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(storage.path().join("registry.log")).unwrap())
                .spawn()
                .expect("start docker-registry");
            let mut reg = Registry { child, port, storage };
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(10) {
                if reg.get("/v2/").is_some_and(|s| s.starts_with("HTTP/1.1 200")) {
                    return reg;
                }
                if let Ok(Some(_)) = reg.child.try_wait() {
                    break; // the port was taken meanwhile: try another
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        panic!("docker-registry did not start");
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// A raw HTTP GET on the registry; the whole response.
    pub fn get(&self, path: &str) -> Option<String> {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        Some(out)
    }

    /// Where the registry keeps a blob's bytes (to tamper with them).
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.storage.path().join(format!("data/docker/registry/v2/blobs/sha256/{}/{hex}/data", &hex[..2]))
    }

    /// Push an OCI layout's image (by its tag there) to `repo:tag` here.
    pub fn push(&self, layout: &Path, layout_tag: &str, dest: &str) {
        let o = Command::new("skopeo")
            .args(["copy", "--quiet", "--all", "--dest-tls-verify=false", "--preserve-digests"])
            .arg(format!("oci:{}:{layout_tag}", layout.display()))
            .arg(format!("docker://{}/{dest}", self.addr()))
            .output()
            .expect("run skopeo");
        assert!(o.status.success(), "skopeo copy failed: {}", String::from_utf8_lossy(&o.stderr));
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn sha256(b: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(b)))
}

/// Builds one layer's tar.
pub struct LayerTar {
    b: tar::Builder<Vec<u8>>,
}

impl Default for LayerTar {
    fn default() -> Self {
        Self::new()
    }
}

impl LayerTar {
    pub fn new() -> Self {
        LayerTar { b: tar::Builder::new(Vec::new()) }
    }

    fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        h
    }

    pub fn dir(mut self, path: &str, mode: u32) -> Self {
        let mut h = Self::header(tar::EntryType::Directory, mode, 0);
        self.b.append_data(&mut h, path, std::io::empty()).unwrap();
        self
    }

    pub fn file(self, path: &str, data: &[u8], mode: u32) -> Self {
        self.file_owned(path, data, mode, 0, 0)
    }

    pub fn file_owned(mut self, path: &str, data: &[u8], mode: u32, uid: u64, gid: u64) -> Self {
        let mut h = Self::header(tar::EntryType::Regular, mode, data.len() as u64);
        h.set_uid(uid);
        h.set_gid(gid);
        self.b.append_data(&mut h, path, data).unwrap();
        self
    }

    pub fn symlink(mut self, path: &str, target: &str) -> Self {
        let mut h = Self::header(tar::EntryType::Symlink, 0o777, 0);
        self.b.append_link(&mut h, path, target).unwrap();
        self
    }

    /// A member whose name is written verbatim (the tar crate refuses `..` otherwise).
    pub fn raw_file(mut self, name: &str, data: &[u8]) -> Self {
        let mut h = Self::header(tar::EntryType::Regular, 0o644, data.len() as u64);
        let field = &mut h.as_old_mut().name;
        field.fill(0);
        field[..name.len()].copy_from_slice(name.as_bytes());
        h.set_cksum();
        self.b.append(&h, data).unwrap();
        self
    }

    /// The static busybox as /bin/busybox, plus /bin/sh -> busybox (single-word commands).
    pub fn busybox(self) -> Self {
        let bb = std::fs::read(BUSYBOX).expect("read /bin/busybox");
        self.dir("bin", 0o755).file("bin/busybox", &bb, 0o755).symlink("bin/sh", "busybox")
    }

    pub fn finish(self) -> Vec<u8> {
        self.b.into_inner().unwrap()
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Comp {
    Gzip,
    Zstd,
    None,
}

pub struct Blob {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    pub bytes: Vec<u8>,
}

/// A layer as pushed: compressed blob plus the diff_id of its tar.
pub struct Layer {
    pub blob: Blob,
    pub diff_id: String,
}

pub fn layer(tar: Vec<u8>, comp: Comp) -> Layer {
    let diff_id = sha256(&tar);
    let (bytes, mt) = match comp {
        Comp::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(&tar).unwrap();
            (e.finish().unwrap(), "application/vnd.oci.image.layer.v1.tar+gzip")
        }
        Comp::Zstd => (zstd::encode_all(&tar[..], 3).unwrap(), "application/vnd.oci.image.layer.v1.tar+zstd"),
        Comp::None => (tar, "application/vnd.oci.image.layer.v1.tar"),
    };
    Layer { blob: blob(bytes, mt), diff_id }
}

pub fn blob(bytes: Vec<u8>, media_type: &str) -> Blob {
    Blob { media_type: media_type.into(), digest: sha256(&bytes), size: bytes.len() as u64, bytes }
}

fn descriptor(b: &Blob) -> serde_json::Value {
    serde_json::json!({"mediaType": b.media_type, "digest": b.digest, "size": b.size})
}

/// An image: config + manifest blobs for `arch` with these layers.
pub struct Image {
    pub config: Blob,
    pub manifest: Blob,
    pub layers: Vec<Layer>,
}

pub fn image(layers: Vec<Layer>, arch: &str, env: &[&str]) -> Image {
    let config = serde_json::json!({
        "architecture": arch, "os": "linux", "created": "2023-11-14T22:13:20Z",
        "config": {"Env": env, "WorkingDir": "/srv", "User": "1000:1000", "Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>()},
    });
    let config = blob(serde_json::to_vec(&config).unwrap(), "application/vnd.oci.image.config.v1+json");
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": descriptor(&config),
        "layers": layers.iter().map(|l| descriptor(&l.blob)).collect::<Vec<_>>(),
    });
    let manifest = blob(serde_json::to_vec(&manifest).unwrap(), "application/vnd.oci.image.manifest.v1+json");
    Image { config, manifest, layers }
}

/// An image index over (platform arch, image).
pub fn index(images: &[(&str, &Image)]) -> Blob {
    let v = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": images.iter().map(|(arch, im)| {
            let mut d = descriptor(&im.manifest);
            d["platform"] = serde_json::json!({"architecture": arch, "os": "linux"});
            d
        }).collect::<Vec<_>>(),
    });
    blob(serde_json::to_vec(&v).unwrap(), "application/vnd.oci.image.index.v1+json")
}

/// Write an OCI layout dir holding `images` and naming `top` (an image manifest or an index
/// blob) as `tag`.
pub fn write_layout(dir: &Path, images: &[&Image], extra: &[&Blob], top: &Blob, tag: &str) {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |b: &Blob| {
        std::fs::write(blobs.join(b.digest.trim_start_matches("sha256:")), &b.bytes).unwrap();
    };
    for im in images {
        put(&im.config);
        put(&im.manifest);
        for l in &im.layers {
            put(&l.blob);
        }
    }
    for b in extra {
        put(b);
    }
    put(top);
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let mut d = descriptor(top);
    d["annotations"] = serde_json::json!({"org.opencontainers.image.ref.name": tag});
    std::fs::write(
        dir.join("index.json"),
        serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "manifests": [d]})).unwrap(),
    )
    .unwrap();
}

/// Build a single-platform image into a layout and push it as `dest`. Returns its manifest
/// digest.
pub fn push_image(reg: &Registry, layers: Vec<Layer>, dest: &str) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let im = image(layers, "amd64", &["PATH=/bin", "GREETING=hello"]);
    write_layout(tmp.path(), &[&im], &[], &im.manifest, "t");
    reg.push(tmp.path(), "t", dest);
    im.manifest.digest.clone()
}

/// `size` bytes that do not compress (a layer big enough to interrupt mid-way).
pub fn noise(size: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407) | 1;
    let mut out = Vec::with_capacity(size);
    while out.len() < size {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(size);
    out
}

//! Guest networking (`NetConfig`): bring up `lo` and the virtio-net interface the host names
//! by MAC address, with a static IPv4 address and a default route; point the resolver at the
//! host's nameservers; trust the host's CA certificates besides the guest's own; and add the
//! host's variables (proxies, CA paths) to every command's environment.
//!
//! The image's disk is left alone wherever possible: the resolver config and the combined CA
//! bundle are written to `/run/pyro` (a tmpfs) and bind-mounted over `/etc/resolv.conf` and
//! `/etc/ssl/certs/ca-certificates.crt`. The one exception is an `/etc/resolv.conf` that is
//! missing or a symlink (typically to a systemd-resolved or resolvconf file under `/run` that
//! does not exist in the guest): nothing can be bind-mounted there, so it is replaced with a
//! regular file, which does change the disk.
//!
//! Interfaces are configured with the classic ioctls (SIOCSIFADDR, SIOCSIFNETMASK,
//! SIOCSIFFLAGS, SIOCADDRT) on an AF_INET datagram socket: no netlink, no `ip` binary, so any
//! rootfs works. Those calls and the mounts live in small functions that unit tests never call
//! (they would reconfigure the build machine); everything else takes its paths as arguments
//! and is tested against temporary directories.

use crate::fs::{internal, invalid, not_found, FsResult};
use std::ffi::CString;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

/// Where the generated files live in the guest (a tmpfs).
pub const RUN_DIR: &str = "/run/pyro";
/// The combined CA bundle in [`RUN_DIR`]: the guest's own roots followed by the host's
/// certificates (`/run/pyro/ca-certificates.crt`).
const BUNDLE_NAME: &str = "ca-certificates.crt";
/// The generated resolver config in [`RUN_DIR`].
const RESOLV_NAME: &str = "resolv.conf";
/// Largest certificate payload accepted (PEM text).
pub const MAX_CA_BYTES: usize = 4 << 20;
/// Most variables `NetConfig` may add to the command environment.
pub const MAX_ENV: usize = 64;
/// Most nameservers (glibc reads three; a few more do no harm).
const MAX_NAMESERVERS: usize = 8;
/// How long to wait for the interface to show up (the driver binds while the init loads the
/// modules, so it is normally there long before the host asks).
const IFACE_WAIT: Duration = Duration::from_secs(3);
/// Variables pointing tools at the combined bundle. Most TLS stacks read the system file we
/// bind-mount over; pip (certifi) and node carry their own roots and need to be told.
const CA_ENV_VARS: [&str; 6] =
    ["SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "PIP_CERT", "CURL_CA_BUNDLE", "GIT_SSL_CAINFO", "NODE_EXTRA_CA_CERTS"];
const BEGIN_CERT: &str = "-----BEGIN CERTIFICATE-----";
const END_CERT: &str = "-----END CERTIFICATE-----";
/// statfs magic of ramfs (the initramfs root may be one); not in `libc`.
const RAMFS_MAGIC: i64 = 0x8584_58f6;

/// Extra environment for every command, set by the last successful `NetConfig`.
static COMMAND_ENV: RwLock<Vec<(String, String)>> = RwLock::new(Vec::new());
/// Bind mounts this agent made (undone before the next `NetConfig` applies, so they never
/// stack); the lock also serialises whole `NetConfig` requests.
static MOUNTED: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Variables `exec` adds after its defaults and before the request's own `env`.
pub fn command_env() -> Vec<(String, String)> {
    COMMAND_ENV.read().unwrap_or_else(|e| e.into_inner()).clone()
}

fn set_command_env(env: Vec<(String, String)>) {
    *COMMAND_ENV.write().unwrap_or_else(|e| e.into_inner()) = env;
}

/// A `NetConfig` request as it came off the wire (plus its payload of PEM certificates).
pub struct Request<'a> {
    pub mac: &'a str,
    pub address: &'a str,
    pub gateway: &'a str,
    pub nameservers: &'a [String],
    pub env: &'a [(String, String)],
    pub certs: &'a [u8],
}

/// A request after validation: nothing is touched before every field has passed.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Lower case, `aa:bb:cc:dd:ee:ff`.
    pub mac: String,
    pub address: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
    pub nameservers: Vec<Ipv4Addr>,
    pub env: Vec<(String, String)>,
    /// The PEM payload, if any.
    pub certs: Option<String>,
}

/// What the reply reports.
#[derive(Debug, PartialEq)]
pub struct Ready {
    pub interface: String,
    pub ca_bundle: Option<String>,
}

/// The file locations involved; [`Paths::guest`] in the VM, a temporary tree in tests.
#[derive(Debug, Clone)]
pub struct Paths {
    pub sys_class_net: PathBuf,
    pub run_dir: PathBuf,
    pub resolv_conf: PathBuf,
    pub system_bundle: PathBuf,
}

impl Paths {
    pub fn guest() -> Paths {
        Paths {
            sys_class_net: "/sys/class/net".into(),
            run_dir: RUN_DIR.into(),
            resolv_conf: "/etc/resolv.conf".into(),
            system_bundle: "/etc/ssl/certs/ca-certificates.crt".into(),
        }
    }
}

/// Handle one `NetConfig` in the guest.
pub fn configure(req: &Request) -> FsResult<Ready> {
    let cfg = validate(req)?;
    let mut mounted = MOUNTED.lock().unwrap_or_else(|e| e.into_inner());
    let paths = Paths::guest();
    let interface = wait_for_interface(&paths.sys_class_net, &cfg.mac, IFACE_WAIT)?;
    bring_up(&interface, &cfg)
        .map_err(|e| internal(format!("configuring {interface} ({}/{}): {e}", cfg.address, cfg.prefix)))?;
    ensure_run_tmpfs(&paths.run_dir).map_err(|e| internal(format!("preparing {}: {e}", paths.run_dir.display())))?;
    // Undo the previous configuration's mounts first: they must not stack, and the system
    // bundle must be read from the disk, not from our own combined copy.
    while let Some(target) = mounted.last() {
        unmount(target).map_err(|e| internal(format!("unmounting {}: {e}", target.display())))?;
        mounted.pop();
    }
    set_command_env(Vec::new());
    let plan = write_files(&paths, &cfg)?;
    for (source, target) in &plan.binds {
        bind_mount(source, target)
            .map_err(|e| internal(format!("bind-mounting {} over {}: {e}", source.display(), target.display())))?;
        mounted.push(target.clone());
    }
    set_command_env(command_env_for(&cfg.env, plan.ca_bundle.as_deref()));
    Ok(Ready { interface, ca_bundle: plan.ca_bundle.map(|p| p.display().to_string()) })
}

/// Check every field of a request; errors are `invalid_argument` and name the field.
pub fn validate(req: &Request) -> FsResult<Config> {
    let mac = parse_mac(req.mac)?;
    let (address, prefix) = parse_cidr(req.address)?;
    let gateway = parse_gateway(req.gateway, address, prefix)?;
    if req.nameservers.len() > MAX_NAMESERVERS {
        return Err(invalid(format!("at most {MAX_NAMESERVERS} nameservers, got {}", req.nameservers.len())));
    }
    let nameservers = req
        .nameservers
        .iter()
        .map(|s| {
            s.parse::<Ipv4Addr>()
                .ok()
                .filter(|a| !a.is_unspecified() && !a.is_broadcast() && !a.is_multicast())
                .ok_or_else(|| invalid(format!("nameserver {s:?} is not an IPv4 unicast address")))
        })
        .collect::<FsResult<Vec<_>>>()?;
    validate_env(req.env)?;
    let certs = if req.certs.is_empty() { None } else { Some(validate_pem(req.certs)?.to_string()) };
    Ok(Config { mac, address, prefix, gateway, nameservers, env: req.env.to_vec(), certs })
}

/// `aa:bb:cc:dd:ee:ff` (either case) in lower case.
pub fn parse_mac(s: &str) -> FsResult<String> {
    let parts: Vec<&str> = s.split(':').collect();
    let ok = parts.len() == 6 && parts.iter().all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()));
    if !ok {
        return Err(invalid(format!("mac {s:?} is not a MAC address like 52:54:00:12:34:56")));
    }
    Ok(s.to_ascii_lowercase())
}

/// `a.b.c.d/prefix`, a usable host address with a prefix of 0..=32.
pub fn parse_cidr(s: &str) -> FsResult<(Ipv4Addr, u8)> {
    let bad = || invalid(format!("address {s:?} is not an IPv4 address with a prefix length, like 10.0.2.15/24"));
    let (ip, prefix) = s.split_once('/').ok_or_else(bad)?;
    let ip: Ipv4Addr = ip.parse().map_err(|_| bad())?;
    // Digits only: `u8::from_str` would also take a leading `+`.
    if prefix.is_empty() || prefix.len() > 2 || !prefix.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let prefix: u8 = prefix.parse().map_err(|_| bad())?;
    if prefix > 32 {
        return Err(invalid(format!("address {s:?}: the prefix length must be 0 to 32")));
    }
    if ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() || ip.is_loopback() {
        return Err(invalid(format!("address {s:?} is not a usable host address")));
    }
    Ok((ip, prefix))
}

pub fn netmask(prefix: u8) -> Ipv4Addr {
    match prefix {
        0 => Ipv4Addr::UNSPECIFIED,
        p => Ipv4Addr::from(u32::MAX << (32 - u32::from(p.min(32)))),
    }
}

/// The gateway must be another address in the interface's subnet (the route names no device,
/// so the kernel must find the gateway on-link).
fn parse_gateway(s: &str, address: Ipv4Addr, prefix: u8) -> FsResult<Ipv4Addr> {
    let gw: Ipv4Addr = s.parse().map_err(|_| invalid(format!("gateway {s:?} is not an IPv4 address")))?;
    if gw.is_unspecified() || gw.is_broadcast() || gw.is_multicast() || gw.is_loopback() || gw == address {
        return Err(invalid(format!("gateway {s:?} is not a usable gateway address for {address}/{prefix}")));
    }
    let mask = u32::from(netmask(prefix));
    if u32::from(gw) & mask != u32::from(address) & mask {
        return Err(invalid(format!("gateway {gw} is outside the interface's subnet {address}/{prefix}")));
    }
    Ok(gw)
}

/// Names `[A-Za-z_][A-Za-z0-9_]*`, no NUL anywhere, at most [`MAX_ENV`] entries.
pub fn validate_env(env: &[(String, String)]) -> FsResult<()> {
    if env.len() > MAX_ENV {
        return Err(invalid(format!("at most {MAX_ENV} environment variables, got {}", env.len())));
    }
    for (name, value) in env {
        let mut bytes = name.bytes();
        let ok = bytes.next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
            && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !ok {
            let shown: String = name.chars().take(64).collect();
            return Err(invalid(format!("environment variable name {shown:?} is not a valid name")));
        }
        if value.contains('\0') {
            return Err(invalid(format!("environment variable {name} contains a NUL byte")));
        }
    }
    Ok(())
}

/// The payload as text, if it is at most [`MAX_CA_BYTES`] of PEM certificates: at least one
/// `CERTIFICATE` block, every `BEGIN` closed, and no other kind of block (a private key has
/// no business in a world-readable bundle).
pub fn validate_pem(payload: &[u8]) -> FsResult<&str> {
    if payload.len() > MAX_CA_BYTES {
        return Err(invalid(format!(
            "the CA certificates are {} bytes; at most {MAX_CA_BYTES} are accepted",
            payload.len()
        )));
    }
    let text = std::str::from_utf8(payload).map_err(|_| invalid("the CA certificates are not text (PEM expected)"))?;
    if text.contains('\0') {
        return Err(invalid("the CA certificates contain a NUL byte (PEM expected)"));
    }
    let (mut open, mut blocks) = (false, 0usize);
    for line in text.lines().map(|l| l.trim_end()) {
        if line.starts_with("-----BEGIN ") {
            if line != BEGIN_CERT || open {
                return Err(invalid(format!("the CA certificates may only hold {BEGIN_CERT} blocks, found {line:?}")));
            }
            open = true;
        } else if line.starts_with("-----END ") {
            if line != END_CERT || !open {
                return Err(invalid(format!("unexpected {line:?} in the CA certificates")));
            }
            open = false;
            blocks += 1;
        }
    }
    if open {
        return Err(invalid("the CA certificates end inside a certificate block"));
    }
    if blocks == 0 {
        return Err(invalid(format!("the CA certificates hold no {BEGIN_CERT} block (PEM expected)")));
    }
    Ok(text)
}

/// The name of the interface whose `address` file under `sys_class_net` holds `mac`
/// (compared case-insensitively).
pub fn find_interface(sys_class_net: &Path, mac: &str) -> Option<String> {
    let mut names: Vec<String> = std::fs::read_dir(sys_class_net)
        .ok()?
        .flatten()
        .filter(|e| std::fs::read_to_string(e.path().join("address")).is_ok_and(|a| a.trim().eq_ignore_ascii_case(mac)))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    // Deterministic if (oddly) two share the MAC.
    names.sort();
    names.into_iter().next()
}

fn wait_for_interface(sys_class_net: &Path, mac: &str, wait: Duration) -> FsResult<String> {
    let start = Instant::now();
    loop {
        if let Some(name) = find_interface(sys_class_net, mac) {
            return Ok(name);
        }
        if start.elapsed() >= wait {
            let mut present: Vec<String> = std::fs::read_dir(sys_class_net)
                .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
                .unwrap_or_default();
            present.sort();
            return Err(not_found(format!(
                "no network interface with MAC {mac} in the guest (interfaces: {}); is the VM started with \
                 a virtio-net device, and did the virtio_net module load and bind to it?",
                if present.is_empty() { "none".to_string() } else { present.join(", ") }
            )));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `nameserver` lines for `/etc/resolv.conf`.
pub fn resolv_conf_text(nameservers: &[Ipv4Addr]) -> String {
    let mut s = String::from("# Written by pyro-guest from the host's network configuration.\n");
    for ns in nameservers {
        s.push_str(&format!("nameserver {ns}\n"));
    }
    s
}

/// The guest's own bundle (if any) followed by the host's certificates, newline-separated.
pub fn combined_bundle(system: Option<&[u8]>, certs: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(system.map_or(0, <[u8]>::len) + certs.len() + 2);
    if let Some(sys) = system.filter(|s| !s.is_empty()) {
        out.extend_from_slice(sys);
        if !sys.ends_with(b"\n") {
            out.push(b'\n');
        }
    }
    out.extend_from_slice(certs.as_bytes());
    if !certs.ends_with('\n') {
        out.push(b'\n');
    }
    out
}

/// The extra command environment: the CA variables when a bundle was installed, then the
/// host's own variables (which win if they name the same thing).
pub fn command_env_for(env: &[(String, String)], ca_bundle: Option<&Path>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Some(bundle) = ca_bundle {
        let bundle = bundle.display().to_string();
        out.extend(CA_ENV_VARS.iter().map(|k| (k.to_string(), bundle.clone())));
    }
    out.extend(env.iter().cloned());
    out
}

/// What [`write_files`] leaves for the caller to mount.
#[derive(Debug, PartialEq)]
pub struct Plan {
    /// `(source, target)` bind mounts to make, in order.
    pub binds: Vec<(PathBuf, PathBuf)>,
    /// The combined bundle, when the request carried certificates.
    pub ca_bundle: Option<PathBuf>,
}

/// Write the resolver config and the combined bundle under `paths.run_dir`, replace a
/// missing or symlinked resolv.conf (the only disk change), and say what to bind-mount.
/// No nameservers leaves the image's resolv.conf alone; no certificates, its bundle.
/// Must run with the previous configuration's mounts undone.
pub fn write_files(paths: &Paths, cfg: &Config) -> FsResult<Plan> {
    let mut plan = Plan { binds: Vec::new(), ca_bundle: None };
    let resolv_src = paths.run_dir.join(RESOLV_NAME);
    if cfg.nameservers.is_empty() {
        remove_if_present(&resolv_src)?;
    } else {
        let text = resolv_conf_text(&cfg.nameservers);
        write_file(&resolv_src, text.as_bytes())?;
        match std::fs::symlink_metadata(&paths.resolv_conf) {
            Ok(m) if m.file_type().is_file() => plan.binds.push((resolv_src, paths.resolv_conf.clone())),
            // A symlink (usually dangling here: systemd-resolved or resolvconf keep the real
            // file under /run, which is a fresh tmpfs in the guest) or nothing at all: there is
            // nothing to bind-mount over, so this replaces it with a regular file. This is the
            // one case where the image's disk is changed.
            Ok(m) if m.file_type().is_symlink() => write_file(&paths.resolv_conf, text.as_bytes())?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => write_file(&paths.resolv_conf, text.as_bytes())?,
            Ok(_) => {
                return Err(internal(format!("{} is not a regular file or a symlink", paths.resolv_conf.display())))
            }
            Err(e) => return Err(internal(format!("{}: {e}", paths.resolv_conf.display()))),
        }
    }
    let bundle = paths.run_dir.join(BUNDLE_NAME);
    match &cfg.certs {
        None => remove_if_present(&bundle)?,
        Some(certs) => {
            // Follows symlinks: a bundle that is a link to a regular file is mounted over
            // through the link (mount(2) resolves the target path).
            let system_is_file = std::fs::metadata(&paths.system_bundle).is_ok_and(|m| m.is_file());
            let system = if system_is_file {
                Some(
                    std::fs::read(&paths.system_bundle)
                        .map_err(|e| internal(format!("reading {}: {e}", paths.system_bundle.display())))?,
                )
            } else {
                None
            };
            write_file(&bundle, &combined_bundle(system.as_deref(), certs))?;
            if system_is_file {
                plan.binds.push((bundle.clone(), paths.system_bundle.clone()));
            }
            plan.ca_bundle = Some(bundle);
        }
    }
    Ok(plan)
}

/// Write `data` to `path` (mode 0644) through a temporary file and a rename, so readers never
/// see half a file and a symlink at `path` is replaced, not followed.
fn write_file(path: &Path, data: &[u8]) -> FsResult<()> {
    use std::io::Write;
    let fail = |e: io::Error| internal(format!("writing {}: {e}", path.display()));
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(fail)?;
    }
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.pyro-tmp"));
    let _ = std::fs::remove_file(&tmp);
    let result = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(&tmp)
        .and_then(|mut f| f.write_all(data))
        .and_then(|_| std::fs::rename(&tmp, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(fail)
}

fn remove_if_present(path: &Path) -> FsResult<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(internal(format!("removing {}: {e}", path.display()))),
        _ => Ok(()),
    }
}

// ---- System calls (not run by unit tests: they would change the build machine) ----

fn c_path(p: &Path) -> io::Result<CString> {
    use std::os::unix::ffi::OsStrExt;
    CString::new(p.as_os_str().as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Make sure `dir` exists on a tmpfs (or ramfs): `/run` is mounted as a tmpfs by the init in
/// run mode and lives in the initramfs in builder mode; if neither holds (the `/run` mount
/// failed), a tmpfs is mounted at `dir` itself.
fn ensure_run_tmpfs(dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let path = c_path(dir)?;
    // SAFETY: statfs is plain old data, so all-zero is a valid value to be overwritten.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is a valid NUL-terminated string and `st` a writable statfs that outlives
    // the call.
    check(unsafe { libc::statfs(path.as_ptr(), &mut st) })?;
    // The widths of f_type and TMPFS_MAGIC differ between targets; i64 holds both.
    #[allow(clippy::unnecessary_cast)]
    let (fs_type, tmpfs) = (st.f_type as i64, libc::TMPFS_MAGIC as i64);
    if fs_type == tmpfs || fs_type == RAMFS_MAGIC {
        return Ok(());
    }
    let (src, fstype, data) = (c"tmpfs", c"tmpfs", c"mode=0755,size=64m");
    // SAFETY: all pointers are valid NUL-terminated strings for the duration of the call.
    check(unsafe {
        libc::mount(
            src.as_ptr(),
            path.as_ptr(),
            fstype.as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            data.as_ptr() as *const libc::c_void,
        )
    })
}

fn bind_mount(source: &Path, target: &Path) -> io::Result<()> {
    let (s, t) = (c_path(source)?, c_path(target)?);
    // SAFETY: both paths are valid NUL-terminated strings for the call; MS_BIND ignores the
    // (null) file-system type and data.
    check(unsafe { libc::mount(s.as_ptr(), t.as_ptr(), std::ptr::null(), libc::MS_BIND, std::ptr::null()) })
}

/// Detach a bind mount we made; one that is already gone (EINVAL: not a mount point) is fine.
fn unmount(target: &Path) -> io::Result<()> {
    let t = c_path(target)?;
    // SAFETY: `t` is a valid NUL-terminated string for the call.
    match check(unsafe { libc::umount2(t.as_ptr(), libc::MNT_DETACH) }) {
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(()),
        other => other,
    }
}

/// The kernel's `struct rtentry` (linux/route.h). `libc` only defines it for musl, and the
/// guest agent is built against glibc, so it is declared here with the kernel's layout.
#[repr(C)]
struct RtEntry {
    rt_pad1: libc::c_ulong,
    rt_dst: libc::sockaddr,
    rt_gateway: libc::sockaddr,
    rt_genmask: libc::sockaddr,
    rt_flags: libc::c_ushort,
    rt_pad2: libc::c_short,
    rt_pad3: libc::c_ulong,
    rt_pad4: *mut libc::c_void,
    rt_metric: libc::c_short,
    rt_dev: *mut libc::c_char,
    rt_mtu: libc::c_ulong,
    rt_window: libc::c_ulong,
    rt_irtt: libc::c_ushort,
}

#[cfg(target_pointer_width = "64")]
const _: () = assert!(std::mem::size_of::<RtEntry>() == 120);
#[cfg(target_env = "musl")]
const _: () = assert!(std::mem::size_of::<RtEntry>() == std::mem::size_of::<libc::rtentry>());

fn sockaddr(ip: Ipv4Addr) -> libc::sockaddr {
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        // s_addr is in network byte order: the octets as they are, in memory order.
        sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(ip.octets()) },
        sin_zero: [0; 8],
    };
    // SAFETY: sockaddr_in and sockaddr are both 16-byte C structs of plain integers
    // (transmute refuses to compile if the sizes differ), and every bit pattern is a valid
    // sockaddr; this is the reinterpretation the socket API itself prescribes.
    unsafe { std::mem::transmute::<libc::sockaddr_in, libc::sockaddr>(sin) }
}

fn ifreq(name: &str) -> io::Result<libc::ifreq> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("bad interface name {name:?}")));
    }
    // SAFETY: ifreq is a C struct of a char array and a union of integers, sockaddrs and a
    // pointer; all-zero is a valid value (the pointer member is never read).
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    Ok(req)
}

/// One ioctl on `sock` whose argument is a `T` the kernel reads and may write back.
fn ioctl<T>(sock: &OwnedFd, request: libc::c_ulong, arg: &mut T) -> io::Result<()> {
    // SAFETY: `sock` is an open socket, `arg` points at a live, exclusively borrowed `T`, and
    // every caller pairs the request with the argument type the kernel expects for it (ifreq
    // for the SIOC*IF* requests, rtentry for SIOCADDRT/SIOCDELRT), so the kernel reads and
    // writes only within `arg`.
    check(unsafe { libc::ioctl(sock.as_raw_fd(), request as _, arg as *mut T) })
}

fn set_up(sock: &OwnedFd, name: &str) -> io::Result<()> {
    let mut req = ifreq(name)?;
    ioctl(sock, libc::SIOCGIFFLAGS, &mut req)?;
    // SAFETY: SIOCGIFFLAGS just filled the ifru_flags member of the union.
    let flags = unsafe { req.ifr_ifru.ifru_flags };
    if flags & libc::IFF_UP as libc::c_short != 0 {
        return Ok(());
    }
    req.ifr_ifru.ifru_flags = flags | libc::IFF_UP as libc::c_short;
    ioctl(sock, libc::SIOCSIFFLAGS, &mut req)
}

fn default_route(gateway: Ipv4Addr) -> RtEntry {
    RtEntry {
        rt_pad1: 0,
        rt_dst: sockaddr(Ipv4Addr::UNSPECIFIED),
        rt_gateway: sockaddr(gateway),
        rt_genmask: sockaddr(Ipv4Addr::UNSPECIFIED),
        rt_flags: libc::RTF_UP | libc::RTF_GATEWAY,
        rt_pad2: 0,
        rt_pad3: 0,
        rt_pad4: std::ptr::null_mut(),
        rt_metric: 0,
        // No device: the kernel picks the interface whose subnet holds the gateway.
        rt_dev: std::ptr::null_mut(),
        rt_mtu: 0,
        rt_window: 0,
        rt_irtt: 0,
    }
}

/// Bring `lo` up (idempotent). Services listen on and are probed over 127.0.0.1, also in a
/// guest without a NIC, where nothing else brings loopback up.
pub fn loopback_up() -> io::Result<()> {
    // SAFETY: plain socket(2) with constant arguments.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    check(fd)?;
    // SAFETY: `fd` was just returned by socket(2), is valid and owned by nothing else.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    set_up(&sock, "lo")
}

/// `lo` up; `name` up with the address and netmask; the default route via the gateway
/// (replacing one a previous configuration added).
fn bring_up(name: &str, cfg: &Config) -> io::Result<()> {
    // SAFETY: plain socket(2) with constant arguments.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    check(fd)?;
    // SAFETY: `fd` was just returned by socket(2), is valid and owned by nothing else.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    set_up(&sock, "lo").map_err(|e| io::Error::new(e.kind(), format!("bringing up lo: {e}")))?;
    let mut req = ifreq(name)?;
    req.ifr_ifru.ifru_addr = sockaddr(cfg.address);
    ioctl(&sock, libc::SIOCSIFADDR, &mut req).map_err(|e| io::Error::new(e.kind(), format!("SIOCSIFADDR: {e}")))?;
    let mut req = ifreq(name)?;
    req.ifr_ifru.ifru_netmask = sockaddr(netmask(cfg.prefix));
    ioctl(&sock, libc::SIOCSIFNETMASK, &mut req)
        .map_err(|e| io::Error::new(e.kind(), format!("SIOCSIFNETMASK: {e}")))?;
    set_up(&sock, name).map_err(|e| io::Error::new(e.kind(), format!("setting the interface up: {e}")))?;
    // A second configuration: drop the old default route first (none is fine).
    match ioctl(&sock, libc::SIOCDELRT, &mut default_route(Ipv4Addr::UNSPECIFIED)) {
        Err(e) if e.raw_os_error() != Some(libc::ESRCH) => {
            return Err(io::Error::new(e.kind(), format!("removing the old default route: {e}")))
        }
        _ => {}
    }
    ioctl(&sock, libc::SIOCADDRT, &mut default_route(cfg.gateway))
        .map_err(|e| io::Error::new(e.kind(), format!("adding the default route via {}: {e}", cfg.gateway)))
}

#[cfg(test)]
mod tests {
    //! Validation and file contents only: nothing here calls the ioctls or mounts, and nothing
    //! spawns a process (see the note in `exec`'s tests).

    use super::*;

    const CA_BUNDLE: &str = "/run/pyro/ca-certificates.crt";
    const CERT: &str = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\n-----END CERTIFICATE-----\n";

    fn request<'a>(certs: &'a [u8], nameservers: &'a [String], env: &'a [(String, String)]) -> Request<'a> {
        Request { mac: "52:54:00:AB:cd:01", address: "10.0.2.15/24", gateway: "10.0.2.2", nameservers, env, certs }
    }

    fn code<T: std::fmt::Debug>(r: FsResult<T>) -> &'static str {
        r.unwrap_err().code.as_str()
    }

    fn parts(e: pyro_proto::WireError) -> (&'static str, String) {
        (e.code.as_str(), e.message)
    }

    fn cfg(nameservers: &[&str], certs: Option<&str>) -> Config {
        Config {
            mac: "52:54:00:ab:cd:01".into(),
            address: "10.0.2.15".parse().unwrap(),
            prefix: 24,
            gateway: "10.0.2.2".parse().unwrap(),
            nameservers: nameservers.iter().map(|s| s.parse().unwrap()).collect(),
            env: vec![],
            certs: certs.map(str::to_string),
        }
    }

    fn paths(root: &Path) -> Paths {
        Paths {
            sys_class_net: root.join("sys/class/net"),
            run_dir: root.join("run/pyro"),
            resolv_conf: root.join("etc/resolv.conf"),
            system_bundle: root.join("etc/ssl/certs/ca-certificates.crt"),
        }
    }

    #[test]
    fn a_good_request_validates() {
        let ns = vec!["10.0.2.3".to_string()];
        let env = vec![("HTTPS_PROXY".to_string(), "http://10.0.2.2:3128".to_string())];
        let c = validate(&request(CERT.as_bytes(), &ns, &env)).unwrap();
        assert_eq!(c.mac, "52:54:00:ab:cd:01");
        assert_eq!((c.address, c.prefix, c.gateway), ("10.0.2.15".parse().unwrap(), 24, "10.0.2.2".parse().unwrap()));
        assert_eq!(c.nameservers, vec!["10.0.2.3".parse::<Ipv4Addr>().unwrap()]);
        assert_eq!(c.env, env);
        assert_eq!(c.certs.as_deref(), Some(CERT));
        // No certificates, no nameservers, no env: all fine.
        let c = validate(&request(b"", &[], &[])).unwrap();
        assert_eq!((c.certs, c.nameservers.len(), c.env.len()), (None, 0, 0));
    }

    #[test]
    fn bad_addresses_are_invalid_arguments() {
        for mac in
            ["", "52:54:00:ab:cd", "52:54:00:ab:cd:01:02", "52-54-00-ab-cd-01", "52:54:00:ab:cd:zz", "5:54:00:ab:cd:01"]
        {
            assert_eq!(code(parse_mac(mac)), "invalid_argument", "{mac}");
        }
        for a in [
            "10.0.2.15",
            "10.0.2.15/",
            "10.0.2.15/33",
            "10.0.2.15/+8",
            "10.0.2.15/-1",
            "10.0.2.15/024",
            "10.0.2/24",
            "x/24",
            "0.0.0.0/24",
            "127.0.0.1/8",
            "224.0.0.1/4",
            "255.255.255.255/32",
            "10.0.2.15/24/1",
        ] {
            assert_eq!(code(parse_cidr(a)), "invalid_argument", "{a}");
        }
        assert_eq!(parse_cidr("10.0.2.15/0").unwrap().1, 0);
        assert_eq!(parse_cidr("192.168.1.7/32").unwrap(), ("192.168.1.7".parse().unwrap(), 32));
        assert_eq!(netmask(0), Ipv4Addr::UNSPECIFIED);
        assert_eq!(netmask(24), Ipv4Addr::new(255, 255, 255, 0));
        assert_eq!(netmask(31), Ipv4Addr::new(255, 255, 255, 254));
        assert_eq!(netmask(32), Ipv4Addr::BROADCAST);

        let addr: Ipv4Addr = "10.0.2.15".parse().unwrap();
        assert!(parse_gateway("10.0.2.2", addr, 24).is_ok());
        assert!(parse_gateway("192.168.0.1", addr, 0).is_ok());
        for gw in ["10.0.3.2", "10.0.2.15", "0.0.0.0", "nope", "10.0.2.255.1", ""] {
            assert_eq!(code(parse_gateway(gw, addr, 24)), "invalid_argument", "{gw}");
        }
        let e = parse_gateway("10.0.3.2", addr, 24).unwrap_err().message;
        assert!(e.contains("outside") && e.contains("10.0.2.15/24"), "{e}");

        let ns = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        for bad in [ns(&["8.8.8.8", "::1"]), ns(&["0.0.0.0"]), ns(&["dns.example"]), ns(&["1.1.1.1"; 9])] {
            assert_eq!(code(validate(&request(b"", &bad, &[]))), "invalid_argument", "{bad:?}");
        }
        let mut r = request(b"", &[], &[]);
        r.gateway = "10.1.0.1";
        assert_eq!(code(validate(&r)), "invalid_argument");
    }

    #[test]
    fn env_names_values_and_count_are_checked() {
        let kv = |k: &str, v: &str| (k.to_string(), v.to_string());
        assert!(validate_env(&[kv("HTTP_PROXY", "http://h:1"), kv("_x9", ""), kv("no_proxy", "a,b")]).is_ok());
        for bad in
            [kv("", "v"), kv("9A", "v"), kv("A-B", "v"), kv("A B", "v"), kv("A=B", "v"), kv("A\0", "v"), kv("É", "v")]
        {
            assert_eq!(code(validate_env(std::slice::from_ref(&bad))), "invalid_argument", "{bad:?}");
        }
        assert_eq!(code(validate_env(&[kv("A", "x\0y")])), "invalid_argument");
        let many: Vec<_> = (0..=MAX_ENV).map(|i| kv(&format!("V{i}"), "1")).collect();
        assert!(validate_env(&many[..MAX_ENV]).is_ok());
        assert_eq!(code(validate_env(&many)), "invalid_argument");
    }

    #[test]
    fn certificates_must_be_pem_certificates_within_the_cap() {
        assert_eq!(validate_pem(CERT.as_bytes()).unwrap(), CERT);
        let two = format!("{CERT}\r\n{}", CERT.replace('\n', "\r\n"));
        assert!(validate_pem(two.as_bytes()).is_ok());
        let key = "-----BEGIN PRIVATE KEY-----\nabc\n-----END PRIVATE KEY-----\n";
        for bad in [
            b"hello".to_vec(),
            b"\xff\xfe-----BEGIN CERTIFICATE-----".to_vec(),
            format!("{CERT}\0").into_bytes(),
            format!("{CERT}{key}").into_bytes(),
            b"-----BEGIN CERTIFICATE-----\nabc\n".to_vec(),
            b"-----END CERTIFICATE-----\n".to_vec(),
            format!("-----BEGIN CERTIFICATE-----\n{CERT}").into_bytes(),
        ] {
            assert_eq!(code(validate_pem(&bad)), "invalid_argument", "{}", String::from_utf8_lossy(&bad));
        }
        // The cap: exactly 4 MiB passes, one byte more does not (and is not parsed).
        let mut big = CERT.as_bytes().to_vec();
        big.resize(MAX_CA_BYTES, b'\n');
        assert!(validate_pem(&big).is_ok());
        big.push(b'\n');
        let (c, m) = parts(validate_pem(&big).unwrap_err());
        assert!(c == "invalid_argument" && m.contains("4194304"), "{m}");
        // Through the whole request too.
        assert_eq!(code(validate(&request(b"not pem", &[], &[]))), "invalid_argument");
    }

    #[test]
    fn interfaces_are_found_by_mac_in_a_fake_sysfs() {
        let dir = tempfile::tempdir().unwrap();
        let net = dir.path().join("sys/class/net");
        for (name, mac) in [("lo", "00:00:00:00:00:00"), ("eth0", "52:54:00:ab:cd:01"), ("eth1", "52:54:00:AB:CD:02")] {
            std::fs::create_dir_all(net.join(name)).unwrap();
            std::fs::write(net.join(name).join("address"), format!("{mac}\n")).unwrap();
        }
        // An entry without an address file is skipped, not an error.
        std::fs::create_dir_all(net.join("bonding_masters_dir")).unwrap();
        assert_eq!(find_interface(&net, "52:54:00:ab:cd:01").as_deref(), Some("eth0"));
        assert_eq!(find_interface(&net, "52:54:00:AB:CD:01").as_deref(), Some("eth0"));
        assert_eq!(find_interface(&net, "52:54:00:ab:cd:02").as_deref(), Some("eth1"));
        assert_eq!(find_interface(&net, "52:54:00:ab:cd:03"), None);
        assert_eq!(find_interface(&dir.path().join("missing"), "52:54:00:ab:cd:01"), None);
        let (c, m) = parts(wait_for_interface(&net, "52:54:00:ab:cd:03", Duration::ZERO).unwrap_err());
        assert_eq!(c, "not_found");
        assert!(m.contains("52:54:00:ab:cd:03") && m.contains("eth0, eth1") && m.contains("virtio_net"), "{m}");
        assert_eq!(wait_for_interface(&net, "52:54:00:ab:cd:02", Duration::ZERO).unwrap(), "eth1");
    }

    #[test]
    fn resolv_conf_and_bundle_are_written_and_planned_for_bind_mounts() {
        let dir = tempfile::tempdir().unwrap();
        let p = paths(dir.path());
        std::fs::create_dir_all(p.system_bundle.parent().unwrap()).unwrap();
        std::fs::write(&p.resolv_conf, "nameserver 192.0.2.1\n").unwrap();
        let system = "-----BEGIN CERTIFICATE-----\nSYSTEM\n-----END CERTIFICATE-----";
        std::fs::write(&p.system_bundle, system).unwrap();

        let plan = write_files(&p, &cfg(&["10.0.2.3", "1.1.1.1"], Some(CERT))).unwrap();
        let resolv_src = p.run_dir.join("resolv.conf");
        let bundle = p.run_dir.join("ca-certificates.crt");
        assert_eq!(
            plan,
            Plan {
                binds: vec![(resolv_src.clone(), p.resolv_conf.clone()), (bundle.clone(), p.system_bundle.clone())],
                ca_bundle: Some(bundle.clone()),
            }
        );
        let text = std::fs::read_to_string(&resolv_src).unwrap();
        assert!(text.starts_with('#'));
        assert_eq!(
            text.lines().filter(|l| !l.starts_with('#')).collect::<Vec<_>>(),
            ["nameserver 10.0.2.3", "nameserver 1.1.1.1"]
        );
        // The disk's files are untouched (they are mounted over, not rewritten).
        assert_eq!(std::fs::read_to_string(&p.resolv_conf).unwrap(), "nameserver 192.0.2.1\n");
        assert_eq!(std::fs::read_to_string(&p.system_bundle).unwrap(), system);
        // The combined bundle: the system roots first, then the host's, newline-separated.
        assert_eq!(std::fs::read_to_string(&bundle).unwrap(), format!("{system}\n{CERT}"));
        assert!(validate_pem(&std::fs::read(&bundle).unwrap()).is_ok());
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&bundle).unwrap().permissions().mode() & 0o777, 0o644);

        // A reconfiguration without nameservers or certificates drops the generated files and
        // plans no mounts (the image's own files are used again).
        let plan = write_files(&p, &cfg(&[], None)).unwrap();
        assert_eq!(plan, Plan { binds: vec![], ca_bundle: None });
        assert!(!resolv_src.exists() && !bundle.exists());
        assert!(std::fs::read_dir(&p.run_dir).unwrap().next().is_none(), "no temporary files left");
    }

    #[test]
    fn missing_or_symlinked_resolv_conf_is_replaced_and_no_system_bundle_means_no_mount() {
        let dir = tempfile::tempdir().unwrap();
        let p = paths(dir.path());
        // Missing /etc/resolv.conf (and no /etc at all): written in place, nothing to mount.
        let plan = write_files(&p, &cfg(&["10.0.2.3"], Some(CERT))).unwrap();
        let bundle = p.run_dir.join("ca-certificates.crt");
        assert_eq!(plan, Plan { binds: vec![], ca_bundle: Some(bundle.clone()) });
        let want = resolv_conf_text(&["10.0.2.3".parse().unwrap()]);
        assert_eq!(std::fs::read_to_string(&p.resolv_conf).unwrap(), want);
        // Without a system bundle the combined one is just the host's certificates.
        assert_eq!(std::fs::read_to_string(&bundle).unwrap(), CERT);

        // A dangling symlink (systemd-resolved's stub) is replaced by a regular file; the link
        // is replaced, not followed.
        std::fs::remove_file(&p.resolv_conf).unwrap();
        std::os::unix::fs::symlink("../run/systemd/resolve/stub-resolv.conf", &p.resolv_conf).unwrap();
        let plan = write_files(&p, &cfg(&["10.0.2.4"], None)).unwrap();
        assert_eq!(plan, Plan { binds: vec![], ca_bundle: None });
        let meta = std::fs::symlink_metadata(&p.resolv_conf).unwrap();
        assert!(meta.file_type().is_file());
        assert!(std::fs::read_to_string(&p.resolv_conf).unwrap().contains("nameserver 10.0.2.4\n"));
        assert!(!dir.path().join("run/systemd").exists());
        let etc: Vec<_> = std::fs::read_dir(p.resolv_conf.parent().unwrap()).unwrap().flatten().collect();
        assert_eq!(etc.len(), 1, "no temporary files left in /etc");

        // Now a regular file: the next configuration mounts over it instead.
        let plan = write_files(&p, &cfg(&["10.0.2.5"], None)).unwrap();
        assert_eq!(plan.binds, vec![(p.run_dir.join("resolv.conf"), p.resolv_conf.clone())]);

        // A directory there is an error, not a panic.
        std::fs::remove_file(&p.resolv_conf).unwrap();
        std::fs::create_dir(&p.resolv_conf).unwrap();
        assert_eq!(code(write_files(&p, &cfg(&["10.0.2.3"], None))), "internal");
    }

    #[test]
    fn bundle_concatenation_and_command_env() {
        assert_eq!(Paths::guest().run_dir.join(BUNDLE_NAME), Path::new(CA_BUNDLE));
        assert_eq!(combined_bundle(None, "A"), b"A\n");
        assert_eq!(combined_bundle(Some(b""), "A\n"), b"A\n");
        assert_eq!(combined_bundle(Some(b"S"), "A\n"), b"S\nA\n");
        assert_eq!(combined_bundle(Some(b"S\n"), "A"), b"S\nA\n");

        let env = vec![("HTTPS_PROXY".to_string(), "http://10.0.2.2:3128".to_string())];
        assert_eq!(command_env_for(&env, None), env);
        let out = command_env_for(&env, Some(Path::new(CA_BUNDLE)));
        let names: Vec<&str> = out.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "SSL_CERT_FILE",
                "REQUESTS_CA_BUNDLE",
                "PIP_CERT",
                "CURL_CA_BUNDLE",
                "GIT_SSL_CAINFO",
                "NODE_EXTRA_CA_CERTS",
                "HTTPS_PROXY"
            ]
        );
        assert!(out[..6].iter().all(|(_, v)| v == CA_BUNDLE));
        // The host's own variables come last, so they win over the CA defaults.
        let own = vec![("SSL_CERT_FILE".to_string(), "/etc/custom.pem".to_string())];
        assert_eq!(command_env_for(&own, Some(Path::new(CA_BUNDLE))).last(), own.last());
    }

    #[test]
    fn route_and_socket_structs_have_the_kernel_layout() {
        assert_eq!(std::mem::size_of::<libc::sockaddr>(), 16);
        let sa = sockaddr(Ipv4Addr::new(10, 0, 2, 2));
        assert_eq!(sa.sa_family, libc::AF_INET as libc::sa_family_t);
        // Port 0, then the address in network order.
        assert_eq!(&sa.sa_data[..6].iter().map(|&b| b as u8).collect::<Vec<_>>(), &[0, 0, 10, 0, 2, 2]);
        let r = default_route(Ipv4Addr::new(10, 0, 2, 2));
        assert_eq!(r.rt_flags, libc::RTF_UP | libc::RTF_GATEWAY);
        assert!(r.rt_dev.is_null());
        assert_eq!(std::mem::offset_of!(RtEntry, rt_flags), 8 + 3 * 16);
        let req = ifreq("eth0").unwrap();
        assert_eq!(req.ifr_name[..5].iter().map(|&b| b as u8).collect::<Vec<_>>(), b"eth0\0");
        assert!(ifreq("").is_err() && ifreq("a-name-of-16-chr").is_err() && ifreq("a\0b").is_err());
        assert!(ifreq("fifteen-chars-x").is_ok());
    }
}

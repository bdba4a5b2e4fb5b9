//! Host/guest wire protocol for pyro-mcp.
//!
//! Every message is one frame: a 12-byte prefix (two big-endian u32 lengths and a u32 request
//! id), a JSON header and an optional raw payload. The header says what the message is; the
//! payload carries bytes that should not be JSON-escaped (command output, tar chunks). Both
//! sides check both lengths against hard caps before allocating, so a confused or hostile peer
//! cannot make the other side allocate unbounded memory, and encoding refuses (never panics on)
//! a frame over the caps.
//!
//! Nothing that grows with the workspace travels in one frame. Bulk data is a *stream*: zero or
//! more `Chunk` frames (each at most [`CHUNK`] bytes) carrying the same request id, ended by the
//! request's final reply (guest to host: exec output, file contents, listings and manifests as
//! newline-separated JSON, tar archives) or by `End` (host to guest: tar archives to unpack,
//! file-batch contents). The final reply declares the totals, so the receiver can check what it
//! got; receivers cap what they accept before buffering it.
//!
//! The same framing is used between host clients and the per-VM supervisor, and between the
//! supervisor and the guest agent. This crate does no I/O of its own beyond `Read`/`Write`.

pub mod tarlink;

use serde::{Deserialize, Serialize};
use std::io::{self, Read, Write};

/// Bumped whenever a message changes shape incompatibly. The host refuses an agent whose
/// `Hello` names another version (an older agent in a cached initramfs, say).
pub const PROTOCOL_VERSION: u32 = 6;
/// Largest JSON header either side accepts.
pub const MAX_HEADER: usize = 1 << 20;
/// Largest payload in one frame; streams are cut into chunks of at most this size.
pub const MAX_PAYLOAD: usize = 4 << 20;
/// Largest payload a sender puts in one `Chunk` of a stream.
pub const CHUNK: usize = 1 << 20;
/// Longest line (one JSON-encoded [`FsEntry`]) in a streamed listing or manifest.
pub const MAX_ENTRY_LINE: usize = 64 * 1024;
/// Name of the virtio-serial port the guest agent talks on.
pub const CONTROL_PORT_NAME: &str = "pyro.ctl";

/// How a command is given: an argv vector (no shell) or one shell string (`/bin/sh -c`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Command {
    Argv(Vec<String>),
    Shell(String),
}

impl Command {
    /// Several words run as argv; exactly one word runs through the shell.
    pub fn from_words(words: &[String]) -> Option<Command> {
        match words.len() {
            0 => None,
            1 => Some(Command::Shell(words[0].clone())),
            _ => Some(Command::Argv(words.to_vec())),
        }
    }

    /// A readable one-line rendering (for summaries and history, never for execution).
    pub fn display(&self) -> String {
        match self {
            Command::Shell(s) => s.clone(),
            Command::Argv(v) => v
                .iter()
                .map(|w| {
                    if !w.is_empty() && w.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,@+%".contains(c)) {
                        w.clone()
                    } else {
                        format!("'{}'", w.replace('\'', "'\\''"))
                    }
                })
                .collect::<Vec<_>>()
                .join(" "),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ExecRequest {
    pub command: Command,
    /// Working directory in the guest; the agent defaults it to `/workspace`.
    pub cwd: Option<String>,
    pub env: Vec<(String, String)>,
    pub timeout_ms: u64,
    /// Cap per stream; head and tail halves are kept around a truncation marker.
    pub max_output_bytes: u64,
    /// Send an `ExecProgress` frame this often while the command runs (0: never).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub progress_ms: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Captured output of one stream: the bytes live in the frame payload.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct StreamInfo {
    /// Bytes in the payload for this stream (after capping, marker included).
    pub len: u64,
    /// Bytes the command actually wrote.
    pub total_bytes: u64,
    pub truncated: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ExecResult {
    pub exit_code: i32,
    /// Signal that ended the command, if any.
    pub signal: Option<i32>,
    pub timed_out: bool,
    /// The host cancelled the command (`Cancel`): its process group was killed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cancelled: bool,
    pub duration_ms: u64,
    pub stdout: StreamInfo,
    pub stderr: StreamInfo,
}

/// Everything that travels on the wire. `Hello` opens a guest session; requests get exactly
/// one reply with the same id (`Error` or their result); `Chunk`/`End` stream data for a request.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Message {
    Hello {
        protocol: u32,
        agent_version: String,
        uptime_ms: u64,
        mode: String,
    },
    Ping,
    Pong,
    Exec(ExecRequest),
    /// Final reply of `Exec`: the captured stdout then stderr bytes come first as a stream
    /// (`stdout.len + stderr.len` bytes in all).
    ExecResult(ExecResult),
    /// While an `Exec` with `progress_ms` runs: how long it has run, how much it wrote, and
    /// its last line of output (clipped, control characters removed). Not a final reply.
    ExecProgress {
        elapsed_ms: u64,
        stdout_bytes: u64,
        stderr_bytes: u64,
        last_line: String,
    },
    /// Host to guest, with the id of a running `Exec`: kill its process group now. No reply of
    /// its own; the `Exec` ends with `cancelled` set. Unknown or finished ids are ignored.
    Cancel,
    /// Start unpacking a tar stream (sent as `Chunk`s then `End`) into `dest` in the guest.
    Unpack {
        dest: String,
        preserve_owners: bool,
        /// Apply the stream as one OCI image layer onto `dest` (a root file system): the agent
        /// unpacks it chrooted into `dest`, honours whiteouts (`.wh.NAME` deletes NAME,
        /// `.wh..wh..opq` hides what lower layers put in that directory), replaces entries of
        /// another type, creates device nodes, and refuses members that climb out with `..`.
        /// Absent on the wire for plain unpacks, so older peers read the same frames.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        oci_layer: bool,
    },
    Unpacked {
        entries: u64,
        bytes: u64,
    },
    Chunk,
    End,
    /// Flush and power off the guest.
    Shutdown,
    Ok,
    Error {
        code: String,
        message: String,
    },
    /// List a directory under /workspace (`path` absolute, inside /workspace). The entries
    /// come as a stream of JSON lines (one [`FsEntry`] each), then `FsEntries`.
    FsList {
        path: String,
        recursive: bool,
        max_entries: u32,
    },
    /// Final reply of `FsList` and `FsManifest`: how many entries the stream carried, and
    /// whether the walk stopped at `max_entries`.
    FsEntries {
        count: u64,
        truncated: bool,
    },
    /// Read up to `max_bytes` of a regular file from `offset`; the bytes come as a stream,
    /// then `FsData` (`truncated`: the file goes on after what was sent).
    /// With `nofollow`, a symlink at `path` is not followed: its target is the content and
    /// `mode` carries the file-type bits (`0o120000`); regular files then also report their
    /// type bits (`0o100000`).
    FsRead {
        path: String,
        max_bytes: u64,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        nofollow: bool,
        /// Start reading this many bytes into the file (paging a large file).
        #[serde(default, skip_serializing_if = "is_zero")]
        offset: u64,
    },
    FsData {
        size: u64,
        truncated: bool,
        binary: bool,
        mode: u32,
    },
    /// Apply writes, symlinks, deletes and mode changes all or nothing. The contents of the
    /// `Write` ops follow as a stream (`Chunk`s, then `End`), concatenated in op order.
    FsBatch {
        ops: Vec<FsOp>,
    },
    FsBatchDone {
        written: u64,
        deleted: u64,
    },
    /// Manifest (type, mode, size, sha256) of everything under `path`, at most `max_entries`,
    /// streamed like `FsList`.
    FsManifest {
        path: String,
        max_entries: u32,
    },
    /// Stream `path` out as a tar archive in `Chunk` frames, then `TarDone`.
    TarOut {
        path: String,
    },
    TarDone {
        entries: u64,
        bytes: u64,
    },
    /// Configure the guest's network (sent once after `Hello` when the VM has a NIC): bring up
    /// `lo` and the interface whose MAC is `mac` with `address` (CIDR), a default route via
    /// `gateway`, `nameservers` in the guest's resolver config, and `env` added to every
    /// command's environment (proxy variables, CA bundle paths). The payload is PEM
    /// certificates (the host's CA bundle) to trust besides the guest's own; empty for none.
    /// Reply: `NetReady`.
    NetConfig {
        mac: String,
        address: String,
        gateway: String,
        nameservers: Vec<String>,
        env: Vec<(String, String)>,
    },
    NetReady {
        /// The interface that was configured, e.g. `eth0`.
        interface: String,
        /// Where the combined CA bundle is in the guest, if one was installed.
        ca_bundle: Option<String>,
    },
    /// Flush everything to disk and freeze (or thaw) the root file system (snapshots).
    Freeze,
    Thaw,
    /// Supervisor-level: report VM state (answered by the supervisor, not the guest).
    Status,
    StatusReply {
        state: String,
        detail: serde_json::Value,
    },
    // --- shells ---
    /// Open an interactive shell on a PTY of `cols` x `rows` in `cwd` (default /workspace),
    /// with `env` added. Reply: `ShellInfo`.
    ShellOpen {
        cwd: Option<String>,
        cols: u16,
        rows: u16,
        env: Vec<(String, String)>,
    },
    ShellInfo(ShellInfo),
    /// Read the shell's output from `cursor` (bytes since it opened), at most `max_bytes`,
    /// after waiting until it has been quiet for `idle_ms` (0: no wait; the wait is bounded by
    /// `wait_ms`). Reply: `ShellData` with the bytes as payload.
    ShellRead {
        shell: String,
        cursor: u64,
        max_bytes: u64,
        idle_ms: u64,
        wait_ms: u64,
    },
    ShellData {
        /// Where the payload starts (later than the cursor asked for when older output was
        /// dropped from the shell's ring).
        cursor: u64,
        /// The cursor to read on from.
        next_cursor: u64,
        /// The cursor after the newest byte (more to read while `next_cursor < end`).
        end: u64,
        /// Bytes between the cursor asked for and `cursor` that are gone.
        dropped: u64,
        /// The shell had been quiet for the idle time asked for when the reply was made.
        idle: bool,
        alive: bool,
        exit_code: Option<i32>,
    },
    /// Send the payload to the shell's input. Reply: `ShellInfo`.
    ShellWrite {
        shell: String,
    },
    /// Send `signal` to the shell's foreground process group. Reply: `ShellInfo`.
    ShellSignal {
        shell: String,
        signal: i32,
    },
    /// Change the PTY size (the foreground job gets SIGWINCH). Reply: `ShellInfo`.
    ShellResize {
        shell: String,
        cols: u16,
        rows: u16,
    },
    ShellList,
    ShellListReply {
        shells: Vec<ShellInfo>,
    },
    /// Hang the shell up (its session gets SIGHUP, then SIGKILL) and forget it. Reply:
    /// `ShellInfo` as it was when closed.
    ShellClose {
        shell: String,
    },
    // --- services ---
    /// Start a long-running service (a child of the agent, in its own process group). The
    /// reply (`ServiceReply`) comes as soon as it is spawned; readiness is probed by the agent
    /// and seen through `ServiceStatus`. A live service of the same name is a `conflict`.
    ServiceStart(ServiceSpec),
    /// One service's state (`name`), or all of them: reply `ServiceList`.
    ServiceStatus {
        name: Option<String>,
    },
    /// The end of a service's log rings: the last `tail_lines` lines of each stream, or all
    /// that the rings hold. Reply `ServiceLogData`, the bytes in its payload (stdout, then
    /// stderr; a ring holds at most 1 MiB, so both fit one frame).
    ServiceLogs {
        name: String,
        tail_lines: u64,
        all: bool,
    },
    /// Stop a service: TERM to its process group, KILL after `grace_ms`; the reply
    /// (`ServiceReply`) comes once no process of the group is left.
    ServiceStop {
        name: String,
        grace_ms: u64,
    },
    ServiceReply {
        boot_id: String,
        service: ServiceState,
    },
    ServiceList {
        /// `/proc/sys/kernel/random/boot_id`: a service recorded under another boot is lost.
        boot_id: String,
        services: Vec<ServiceState>,
    },
    ServiceLogData {
        service: ServiceState,
        stdout_len: u64,
        stderr_len: u64,
    },
    /// Supervisor-level: publish one more guest port on the host's 127.0.0.1 while the VM runs
    /// (`host_port` 0 picks a free one). Reply `PortPublished`, or an error (the policy has no
    /// published ports, the host port is taken).
    PublishPort {
        guest_port: u16,
        host_port: u16,
    },
    PortPublished {
        host: String,
        host_port: u16,
        guest_port: u16,
    },
    /// Set the guest's wall clock (after a restore from saved memory the guest's clock is as
    /// old as the save). Reply `Ok`.
    SetClock {
        unix_ns: u64,
    },
    /// Supervisor-level: save the running guest's memory and device state to `path` (written
    /// as `path.part`, renamed when complete), then end QEMU and the supervisor: the
    /// workspace is stopped. Refused while other requests are in flight. Reply `Suspended`.
    Suspend {
        path: String,
    },
    Suspended {
        bytes: u64,
        ms: u64,
    },
    /// Supervisor-level, for `workspace fork`: pause the guest, switch its disk writes to the
    /// existing empty overlay `layer` (whose backing is the layer written until now, which
    /// becomes frozen), save memory and device state to `path` (as `Suspend` does), and let
    /// the guest run on. The frozen layer and the saved state are one consistent moment.
    /// Refused while other requests are in flight. Reply `Suspended`.
    Fork {
        path: String,
        layer: String,
    },
    /// Make this guest its own before its first command (after a cold boot, and after a
    /// restore from a warm template or a fork, whose memory other guests share): mix the
    /// payload (fresh host entropy, [`IDENTITY_ENTROPY`] bytes) into the kernel's pool and
    /// reseed its generator, set the clock, the hostname and `/etc/machine-id` (32 lowercase
    /// hex digits). Reply `Ok`.
    Identity {
        unix_ns: u64,
        hostname: String,
        machine_id: String,
    },
}

/// Bytes of host entropy an `Identity` request carries.
pub const IDENTITY_ENTROPY: usize = 64;

/// One shell as the guest reports it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ShellInfo {
    pub shell_id: String,
    pub pid: i32,
    pub cwd: String,
    pub cols: u16,
    pub rows: u16,
    pub alive: bool,
    pub exit_code: Option<i32>,
    /// Output bytes written since it opened (the cursor of the newest byte).
    pub output_bytes: u64,
    /// Milliseconds since it opened.
    pub age_ms: u64,
}

/// How the agent decides that a service is ready.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Readiness {
    /// The file exists (a relative path is taken from the service's cwd).
    File { path: String },
    /// A TCP connection to `host:port` (an IP address) succeeds.
    Tcp { host: String, port: u16 },
    /// `GET` of an `http://` URL (IP host) answers 2xx or 3xx.
    Http { url: String },
    /// The shell command exits 0.
    Command { command: String },
}

impl Readiness {
    pub fn display(&self) -> String {
        match self {
            Readiness::File { path } => format!("file {path}"),
            Readiness::Tcp { host, port } => format!("tcp {host}:{port}"),
            Readiness::Http { url } => format!("http {url}"),
            Readiness::Command { command } => format!("command {command}"),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ServiceSpec {
    pub name: String,
    pub command: Command,
    /// Working directory in the guest; the agent defaults it to `/workspace`.
    pub cwd: Option<String>,
    /// Extra environment for the process (the request's variables win over the defaults).
    pub env: Vec<(String, String)>,
    pub readiness: Option<Readiness>,
    pub ready_timeout_ms: u64,
    pub ready_interval_ms: u64,
    /// Restart after a failing exit (with a backoff), at most `max_restarts` times.
    pub restart_on_failure: bool,
    pub max_restarts: u32,
    /// Grace between TERM and KILL when the agent itself stops it (not ready in time).
    pub stop_grace_ms: u64,
}

/// A service as the agent sees it. Times are ages (ms before the reply), so the host can
/// place them on its own clock whatever the guest's says.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct ServiceState {
    pub name: String,
    pub command: String,
    pub cwd: String,
    /// starting, ready, exited (on its own, status 0), failed (non-zero status, a signal,
    /// not ready in time, restarts used up) or stopped (on request).
    pub state: String,
    pub pid: Option<i32>,
    pub readiness: Option<Readiness>,
    /// The last readiness probe's result (`ok`, or why it failed).
    pub last_probe: Option<String>,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub stop_reason: Option<String>,
    pub restarts: u32,
    pub started_ago_ms: u64,
    pub ready_ago_ms: Option<u64>,
    pub ended_ago_ms: Option<u64>,
    pub stdout_bytes: u64,
    pub stderr_bytes: u64,
    /// Bytes that fell out of the bounded log rings.
    pub stdout_dropped: u64,
    pub stderr_dropped: u64,
}

impl ServiceState {
    pub fn is_live(&self) -> bool {
        matches!(self.state.as_str(), "starting" | "ready")
    }
}

/// Service names: 1-64 characters of `[A-Za-z0-9._-]`, starting with a letter or digit (the
/// older release's pattern `^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`).
pub fn valid_service_name(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(f) if f.is_ascii_alphanumeric())
        && s.len() <= 64
        && s.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

/// A readiness URL: `http://HOST[:PORT][/PATH]` with an IP address or `localhost` as HOST
/// (the guest has no resolver we could trust for probes). Returns (ip, port, path).
pub fn parse_probe_url(url: &str) -> Result<(std::net::IpAddr, u16, String), String> {
    let bad = |why: &str| format!("invalid readiness URL '{}': {why}", url.chars().take(80).collect::<String>());
    if url.len() > 2048 || url.chars().any(|c| c.is_control() || c == ' ') {
        return Err(bad("at most 2048 characters, no spaces or control characters"));
    }
    let rest = url.strip_prefix("http://").ok_or_else(|| bad("only http:// URLs are probed"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].to_string()),
        None => (rest, "/".to_string()),
    };
    let (host, port) = split_host_port(authority, 80).map_err(|e| bad(&e))?;
    Ok((host, port, path))
}

/// `HOST[:PORT]` (IPv6 in brackets) with an IP address or `localhost`; `default_port` when the
/// port is left out (0: the port is required).
pub fn split_host_port(s: &str, default_port: u16) -> Result<(std::net::IpAddr, u16), String> {
    let (host, port) = if let Some(v6) = s.strip_prefix('[') {
        let (h, rest) = v6.split_once(']').ok_or("unclosed '['")?;
        (h, rest.strip_prefix(':'))
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    let ip: std::net::IpAddr = if host.eq_ignore_ascii_case("localhost") {
        std::net::Ipv4Addr::LOCALHOST.into()
    } else {
        host.parse()
            .map_err(|_| format!("'{}' is not an IP address or localhost", host.chars().take(60).collect::<String>()))?
    };
    let port = match port {
        Some(p) => p.parse::<u16>().ok().filter(|p| *p != 0).ok_or("the port must be 1-65535")?,
        None if default_port != 0 => default_port,
        None => return Err("a port is required (HOST:PORT)".into()),
    };
    Ok((ip, port))
}

/// One file-system entry as the guest reports it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FsEntry {
    /// Path relative to /workspace ("" for /workspace itself).
    pub path: String,
    /// "file", "dir", "symlink" or "other".
    pub kind: String,
    pub mode: u32,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

/// One step of an all-or-nothing file batch.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum FsOp {
    /// Write `len` payload bytes to `path` atomically; `mode` None keeps an existing file's
    /// mode (new files get 0644). Parents are created.
    Write {
        path: String,
        len: u64,
        mode: Option<u32>,
    },
    /// Create (or replace) a symlink at `path` pointing at `target`.
    Symlink {
        path: String,
        target: String,
    },
    Delete {
        path: String,
    },
    Chmod {
        path: String,
        mode: u32,
    },
}

/// One decoded frame.
#[derive(Debug, Clone)]
pub struct Frame {
    pub id: u32,
    pub msg: Message,
    pub payload: Vec<u8>,
}

#[derive(Debug)]
pub enum FrameError {
    Io(io::Error),
    /// The peer sent something we refuse (oversize, bad JSON); the stream is unusable after it.
    Protocol(String),
    /// A frame we were asked to send is over the caps; nothing was written.
    TooLarge(String),
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::Io(e) => write!(f, "i/o: {e}"),
            FrameError::Protocol(m) => write!(f, "protocol: {m}"),
            FrameError::TooLarge(m) => write!(f, "{m}"),
        }
    }
}

impl std::error::Error for FrameError {}

impl From<io::Error> for FrameError {
    fn from(e: io::Error) -> Self {
        FrameError::Io(e)
    }
}

/// Encode a frame into one buffer (so a single `write_all` puts it on the wire atomically
/// with respect to other writers holding the same lock). A message whose header or payload
/// is over the caps is refused with `TooLarge`: the caller reports it, nothing is sent.
pub fn encode(id: u32, msg: &Message, payload: &[u8]) -> Result<Vec<u8>, FrameError> {
    let header = serde_json::to_vec(msg).map_err(|e| FrameError::Protocol(format!("cannot encode message: {e}")))?;
    if header.len() > MAX_HEADER {
        return Err(FrameError::TooLarge(format!(
            "message is {} bytes; the protocol limit is {MAX_HEADER} bytes",
            header.len()
        )));
    }
    if payload.len() > MAX_PAYLOAD {
        return Err(FrameError::TooLarge(format!(
            "payload is {} bytes; the protocol limit is {MAX_PAYLOAD} bytes per frame",
            payload.len()
        )));
    }
    let mut out = Vec::with_capacity(12 + header.len() + payload.len());
    // Both lengths are within the caps (far below u32::MAX), so the casts are exact.
    out.extend_from_slice(&(header.len() as u32).to_be_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(payload);
    Ok(out)
}

pub fn write_frame(w: &mut impl Write, id: u32, msg: &Message, payload: &[u8]) -> Result<(), FrameError> {
    w.write_all(&encode(id, msg, payload)?)?;
    w.flush()?;
    Ok(())
}

/// Read one frame. `Ok(None)` means a clean end of stream before any byte of a frame.
pub fn read_frame(r: &mut impl Read) -> Result<Option<Frame>, FrameError> {
    let mut prefix = [0u8; 12];
    let mut got = 0;
    while got < prefix.len() {
        match r.read(&mut prefix[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(FrameError::Io(io::ErrorKind::UnexpectedEof.into())),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        }
    }
    let word = |i: usize| u32::from_be_bytes([prefix[i], prefix[i + 1], prefix[i + 2], prefix[i + 3]]);
    let (hlen, plen, id) = (word(0) as usize, word(4) as usize, word(8));
    if hlen == 0 || hlen > MAX_HEADER || plen > MAX_PAYLOAD {
        return Err(FrameError::Protocol(format!("frame lengths out of bounds: header {hlen}, payload {plen}")));
    }
    let mut header = vec![0u8; hlen];
    r.read_exact(&mut header)?;
    // serde quotes what it could not parse: the peer's bytes, so clip them.
    let msg: Message = serde_json::from_slice(&header).map_err(|e| {
        FrameError::Protocol(format!("bad header: {}", e.to_string().chars().take(200).collect::<String>()))
    })?;
    let mut payload = vec![0u8; plen];
    r.read_exact(&mut payload)?;
    Ok(Some(Frame { id, msg, payload }))
}

/// A `Write` that cuts a byte stream into pieces of at most [`CHUNK`] bytes and hands each to
/// `send` (which puts it in a `Chunk` frame). Call `flush` at the end for the last piece.
pub struct ChunkWriter<F: FnMut(&[u8]) -> io::Result<()>> {
    send: F,
    buf: Vec<u8>,
}

impl<F: FnMut(&[u8]) -> io::Result<()>> ChunkWriter<F> {
    pub fn new(send: F) -> Self {
        ChunkWriter { send, buf: Vec::new() }
    }
}

impl<F: FnMut(&[u8]) -> io::Result<()>> Write for ChunkWriter<F> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = CHUNK - self.buf.len();
        let take = room.min(data.len());
        self.buf.extend_from_slice(&data[..take]);
        if self.buf.len() >= CHUNK {
            self.flush()?;
        }
        Ok(take)
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            (self.send)(&self.buf)?;
            self.buf.clear();
        }
        Ok(())
    }
}

/// Splits a stream of newline-terminated records (streamed listings) into lines, refusing any
/// line longer than `max_line` before buffering more of it.
pub struct LineSplitter {
    buf: Vec<u8>,
    max_line: usize,
}

impl LineSplitter {
    pub fn new(max_line: usize) -> Self {
        LineSplitter { buf: Vec::new(), max_line }
    }

    /// Feed bytes; `line` is called for each complete line (without its newline).
    pub fn push(&mut self, mut data: &[u8], line: &mut dyn FnMut(&[u8]) -> Result<(), String>) -> Result<(), String> {
        while let Some(nl) = data.iter().position(|&b| b == b'\n') {
            if self.buf.len().saturating_add(nl) > self.max_line {
                return Err(format!("a streamed record is longer than {} bytes", self.max_line));
            }
            if self.buf.is_empty() {
                line(&data[..nl])?;
            } else {
                self.buf.extend_from_slice(&data[..nl]);
                let whole = std::mem::take(&mut self.buf);
                line(&whole)?;
            }
            data = &data[nl + 1..];
        }
        if self.buf.len().saturating_add(data.len()) > self.max_line {
            return Err(format!("a streamed record is longer than {} bytes", self.max_line));
        }
        self.buf.extend_from_slice(data);
        Ok(())
    }

    /// End of stream: a last line without its newline is an error (the sender always ends
    /// records with one).
    pub fn finish(self) -> Result<(), String> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err("the stream ended inside a record".into())
        }
    }
}

/// Keeps the first and last halves of a byte stream within a cap, counting what it dropped.
/// Used by the guest for command output; the marker names how many bytes were omitted.
pub struct HeadTail {
    cap: usize,
    head: Vec<u8>,
    tail: std::collections::VecDeque<u8>,
    total: u64,
}

impl HeadTail {
    pub fn new(cap: usize) -> Self {
        HeadTail { cap, head: Vec::new(), tail: std::collections::VecDeque::new(), total: 0 }
    }

    pub fn push(&mut self, mut data: &[u8]) {
        self.total += data.len() as u64;
        let head_cap = self.cap / 2;
        if self.head.len() < head_cap {
            let take = (head_cap - self.head.len()).min(data.len());
            self.head.extend_from_slice(&data[..take]);
            data = &data[take..];
        }
        let tail_cap = self.cap - head_cap;
        if data.len() >= tail_cap {
            self.tail.clear();
            self.tail.extend(&data[data.len() - tail_cap..]);
        } else {
            let overflow = (self.tail.len() + data.len()).saturating_sub(tail_cap);
            self.tail.drain(..overflow);
            self.tail.extend(data);
        }
    }

    pub fn total(&self) -> u64 {
        self.total
    }

    /// The kept bytes, with a visible marker in place of what was dropped.
    pub fn finish(self) -> (Vec<u8>, StreamInfo) {
        let kept = self.head.len() + self.tail.len();
        let omitted = self.total - kept as u64;
        let mut out = self.head;
        if omitted > 0 {
            out.extend_from_slice(truncation_marker(omitted).as_bytes());
        }
        out.extend(self.tail);
        let info = StreamInfo { len: out.len() as u64, total_bytes: self.total, truncated: omitted > 0 };
        (out, info)
    }
}

/// The marker put where output was cut. Stable text: tests and users grep for it.
pub fn truncation_marker(omitted: u64) -> String {
    format!("\n[pyro: output truncated, {omitted} bytes omitted]\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpack_without_oci_flag_keeps_its_old_shape() {
        let plain = Message::Unpack { dest: "/target".into(), preserve_owners: true, oci_layer: false };
        let json = serde_json::to_string(&plain).unwrap();
        assert!(!json.contains("oci_layer"), "{json}");
        let old: Message = serde_json::from_str(r#"{"type":"unpack","dest":"/w","preserve_owners":false}"#).unwrap();
        assert_eq!(old, Message::Unpack { dest: "/w".into(), preserve_owners: false, oci_layer: false });
        let oci = Message::Unpack { dest: "/target".into(), preserve_owners: true, oci_layer: true };
        assert_eq!(serde_json::from_str::<Message>(&serde_json::to_string(&oci).unwrap()).unwrap(), oci);
    }

    #[test]
    fn frame_roundtrip() {
        let msg = Message::Exec(ExecRequest {
            command: Command::Argv(vec!["echo".into(), "hi".into()]),
            cwd: None,
            env: vec![("A".into(), "b".into())],
            timeout_ms: 5,
            max_output_bytes: 10,
            progress_ms: 0,
        });
        let buf = encode(7, &msg, b"payload").unwrap();
        let f = read_frame(&mut &buf[..]).unwrap().unwrap();
        assert_eq!(f.id, 7);
        assert_eq!(f.msg, msg);
        assert_eq!(f.payload, b"payload");
        assert!(read_frame(&mut &b""[..]).unwrap().is_none());
    }

    #[test]
    fn oversize_frame_refused() {
        let mut buf = Vec::new();
        buf.extend_from_slice(&(u32::MAX).to_be_bytes());
        buf.extend_from_slice(&0u32.to_be_bytes());
        buf.extend_from_slice(&0u32.to_be_bytes());
        assert!(matches!(read_frame(&mut &buf[..]), Err(FrameError::Protocol(_))));
    }

    #[test]
    fn truncated_frame_is_error() {
        let buf = encode(1, &Message::Ping, b"abc").unwrap();
        assert!(read_frame(&mut &buf[..buf.len() - 1]).is_err());
    }

    #[test]
    fn head_tail_keeps_both_ends() {
        let mut h = HeadTail::new(10);
        for _ in 0..100 {
            h.push(b"0123456789");
        }
        let (out, info) = h.finish();
        assert!(info.truncated);
        assert_eq!(info.total_bytes, 1000);
        let s = String::from_utf8(out).unwrap();
        assert!(s.starts_with("01234\n[pyro: output truncated, 990 bytes omitted]\n"));
        assert!(s.ends_with("56789"));
    }

    #[test]
    fn head_tail_small_output_untouched() {
        let mut h = HeadTail::new(100);
        h.push(b"hello ");
        h.push(b"world");
        let (out, info) = h.finish();
        assert_eq!(out, b"hello world");
        assert!(!info.truncated);
    }

    #[test]
    fn words_choose_shell_or_argv() {
        assert_eq!(Command::from_words(&["a b".into()]), Some(Command::Shell("a b".into())));
        assert_eq!(
            Command::from_words(&["ls".into(), "-l".into()]),
            Some(Command::Argv(vec!["ls".into(), "-l".into()]))
        );
        assert_eq!(Command::from_words(&[]), None);
        assert_eq!(Command::Argv(vec!["echo".into(), "a b".into()]).display(), "echo 'a b'");
    }
    #[test]
    fn oversize_encode_is_an_error_not_a_panic() {
        let big = vec![0u8; MAX_PAYLOAD + 1];
        assert!(matches!(encode(1, &Message::Chunk, &big), Err(FrameError::TooLarge(_))));
        let env = vec![("K".to_string(), "v".repeat(MAX_HEADER))];
        let msg = Message::Exec(ExecRequest {
            command: Command::Shell("true".into()),
            cwd: None,
            env,
            timeout_ms: 1,
            max_output_bytes: 1,
            progress_ms: 0,
        });
        let e = encode(1, &msg, &[]).unwrap_err();
        assert!(e.to_string().contains("protocol limit"), "{e}");
    }

    #[test]
    fn service_names_and_probe_targets() {
        for ok in ["web", "a", "api-1.v2_x", &"n".repeat(64)] {
            assert!(valid_service_name(ok), "{ok}");
        }
        for bad in ["", "-x", ".x", "a b", "a/b", &"n".repeat(65), "é"] {
            assert!(!valid_service_name(bad), "{bad}");
        }
        let (ip, port, path) = parse_probe_url("http://127.0.0.1:8080/health?x=1").unwrap();
        assert_eq!((ip.to_string(), port, path.as_str()), ("127.0.0.1".into(), 8080, "/health?x=1"));
        assert_eq!(parse_probe_url("http://localhost").unwrap().1, 80);
        assert_eq!(parse_probe_url("http://[::1]:81/").unwrap().0.to_string(), "::1");
        for bad in [
            "https://127.0.0.1/",
            "http://example.org/",
            "http://1.2.3.4:0/",
            "http://1.2.3.4:x",
            "ftp://a",
            "http://a b",
        ] {
            assert!(parse_probe_url(bad).is_err(), "{bad}");
        }
        assert_eq!(split_host_port("127.0.0.1:5432", 0).unwrap().1, 5432);
        assert!(split_host_port("127.0.0.1", 0).is_err());
        assert!(split_host_port("db:5432", 0).is_err());
        let spec = ServiceSpec {
            name: "web".into(),
            command: Command::Shell("x".into()),
            cwd: None,
            env: vec![],
            readiness: Some(Readiness::Tcp { host: "127.0.0.1".into(), port: 1 }),
            ready_timeout_ms: 1,
            ready_interval_ms: 1,
            restart_on_failure: false,
            max_restarts: 0,
            stop_grace_ms: 0,
        };
        let m = Message::ServiceStart(spec);
        let buf = encode(3, &m, &[]).unwrap();
        assert_eq!(read_frame(&mut &buf[..]).unwrap().unwrap().msg, m);
    }

    #[test]
    fn chunk_writer_cuts_at_chunk_size() {
        use std::io::Write;
        let mut sizes = Vec::new();
        let mut w = ChunkWriter::new(|d: &[u8]| {
            sizes.push(d.len());
            Ok(())
        });
        w.write_all(&vec![7u8; CHUNK * 2 + 10]).unwrap();
        w.flush().unwrap();
        drop(w);
        assert_eq!(sizes, vec![CHUNK, CHUNK, 10]);
    }

    #[test]
    fn line_splitter_joins_lines_across_pushes_and_caps_them() {
        let mut lines = Vec::new();
        let mut s = LineSplitter::new(8);
        let mut f = |l: &[u8]| {
            lines.push(String::from_utf8_lossy(l).to_string());
            Ok(())
        };
        s.push(b"ab\ncd", &mut f).unwrap();
        s.push(b"ef\n\ng", &mut f).unwrap();
        assert!(s.push(b"12345678\n", &mut f).is_err(), "a 9-byte line is over the cap");
        assert_eq!(lines, vec!["ab", "cdef", ""]);
        let s = LineSplitter::new(8);
        assert!(s.finish().is_ok());
        let mut s = LineSplitter::new(8);
        s.push(b"tail", &mut |_| Ok(())).unwrap();
        assert!(s.finish().is_err());
    }

    mod props {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig { cases: 4000, ..ProptestConfig::default() })]

            /// Arbitrary bytes never panic the decoder, and never make it allocate past the caps.
            #[test]
            fn decoder_survives_garbage(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
                let mut r = &bytes[..];
                for _ in 0..8 {
                    match read_frame(&mut r) {
                        Ok(Some(_)) => continue,
                        _ => break,
                    }
                }
            }

            /// A prefix with forged lengths (any u32, and small ones that get past the caps to
            /// the header parser) before a short random tail: always an error, and the one
            /// that fits the lie.
            #[test]
            fn decoder_refuses_forged_lengths(
                h in prop_oneof![any::<u32>(), 0u32..80],
                p in prop_oneof![any::<u32>(), 0u32..80],
                id in any::<u32>(),
                tail in proptest::collection::vec(any::<u8>(), 0..64),
            ) {
                let mut buf = Vec::new();
                buf.extend_from_slice(&h.to_be_bytes());
                buf.extend_from_slice(&p.to_be_bytes());
                buf.extend_from_slice(&id.to_be_bytes());
                buf.extend_from_slice(&tail);
                let r = read_frame(&mut &buf[..]);
                let (hl, pl) = (h as usize, p as usize);
                if hl == 0 || hl > MAX_HEADER || pl > MAX_PAYLOAD {
                    prop_assert!(matches!(&r, Err(FrameError::Protocol(m)) if m.contains("out of bounds")), "{:?}", r);
                } else if hl > tail.len() {
                    let eof = matches!(&r, Err(FrameError::Io(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof);
                    prop_assert!(eof, "{:?}", r);
                } else {
                    // Random bytes are never a message.
                    prop_assert!(matches!(&r, Err(FrameError::Protocol(m)) if m.starts_with("bad header")), "{:?}", r);
                }
            }

            /// Every encodable message decodes to itself, whatever its payload.
            #[test]
            fn roundtrip(id in any::<u32>(), path in ".{0,64}", payload in proptest::collection::vec(any::<u8>(), 0..512)) {
                let msg = Message::FsRead { path, max_bytes: 5, nofollow: true, offset: 0 };
                let buf = encode(id, &msg, &payload).unwrap();
                let f = read_frame(&mut &buf[..]).unwrap().unwrap();
                prop_assert_eq!(f.id, id);
                prop_assert_eq!(f.msg, msg);
                prop_assert_eq!(f.payload, payload);
            }

            /// Lines split the same way however the stream is cut into pushes.
            #[test]
            fn line_splitter_is_cut_independent(text in "[a-c\n]{0,200}", cut in 0usize..200) {
                let bytes = text.as_bytes();
                let cut = cut.min(bytes.len());
                let collect = |parts: &[&[u8]]| {
                    let mut out = Vec::new();
                    let mut s = LineSplitter::new(1000);
                    for p in parts {
                        s.push(p, &mut |l| { out.push(l.to_vec()); Ok(()) }).unwrap();
                    }
                    out
                };
                prop_assert_eq!(collect(&[bytes]), collect(&[&bytes[..cut], &bytes[cut..]]));
            }
        }
    }
}

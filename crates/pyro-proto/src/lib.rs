//! Host/guest wire protocol for pyro-mcp.
//!
//! Every message is one frame: a 12-byte prefix (two big-endian u32 lengths and a u32 request
//! id), a JSON header and an optional raw payload. The header says what the message is; the
//! payload carries bytes that should not be JSON-escaped (command output, tar chunks). Both
//! sides check both lengths against hard caps before allocating, so a confused or hostile peer
//! cannot make the other side allocate unbounded memory, and encoding refuses (never panics on)
//! a frame over the caps.
//!
//! Frames are typed by direction. Toward the guest ([`ToGuest`]): a [`Request`], which opens
//! its id, or a [`HostStream`] frame on a request in flight (upload `Chunk`s, `End`,
//! `Cancel`). Toward the host ([`ToHost`]): the one [`Reply`] that ends a request (a result or
//! an `Error` with a typed [`ErrorCode`]), or a [`GuestStream`] frame before it (`Chunk`s,
//! exec `Progress`). The header's `frame` field names the kind and `type` the variant; a
//! header that is not a frame of the direction read is malformed.
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

#![warn(missing_docs)]

pub mod tarlink;

use serde::{Deserialize, Serialize};
use std::io::{self, Read, Write};

/// Bumped whenever a message changes shape incompatibly. The host refuses an agent whose
/// `Hello` names another version (an older agent in a cached initramfs, say). 7: frames split
/// into requests, replies and stream frames (`frame` field), typed error codes, modes, entry
/// kinds and service states; `Status` removed.
pub const PROTOCOL_VERSION: u32 = 7;
/// Largest JSON header either side accepts.
pub const MAX_HEADER: usize = 1 << 20;
/// Largest payload in one frame; streams are cut into chunks of at most this size.
pub const MAX_PAYLOAD: usize = 4 << 20;
/// Largest payload a sender puts in one `Chunk` of a stream.
pub const CHUNK: usize = 1 << 20;
/// `FsReadMany`: most paths in one request.
pub const MAX_READ_MANY: usize = 10_000;
/// `FsReadMany`: the length that marks a file that could not be read.
pub const READ_MANY_UNREADABLE: u64 = u64::MAX;
/// `FsReadMany`: the length that marks a file not read because `max_total` was reached.
pub const READ_MANY_SKIPPED: u64 = u64::MAX - 1;
/// Longest line (one JSON-encoded [`FsEntry`]) in a streamed listing or manifest.
pub const MAX_ENTRY_LINE: usize = 64 * 1024;
/// Name of the virtio-serial port the guest agent talks on.
pub const CONTROL_PORT_NAME: &str = "pyro.ctl";

/// How a command is given: an argv vector (no shell) or one shell string (`/bin/sh -c`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Command {
    /// Run the program `argv[0]` with these arguments, no shell in between.
    Argv(Vec<String>),
    /// Run the string with `/bin/sh -c`.
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

/// What `Exec` runs and how: the command, its directory, environment, timeout and output cap.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ExecRequest {
    /// The command to run.
    pub command: Command,
    /// Working directory in the guest; the agent defaults it to `/workspace`.
    pub cwd: Option<String>,
    /// Variables added to the command's environment, name and value.
    pub env: Vec<(String, String)>,
    /// Milliseconds before the command's process group is killed (the result says `timed_out`).
    pub timeout_ms: u64,
    /// Cap per stream; head and tail halves are kept around a truncation marker.
    pub max_output_bytes: u64,
    /// Send a `Progress` frame this often while the command runs (0: never).
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
    /// The stream was longer than the cap; its middle was cut at the marker.
    pub truncated: bool,
}

/// How a command ended; its captured output came before this reply as a stream.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ExecResult {
    /// The exit status (124 when the timeout killed it, 128+N for signal N, 127 when the program
    /// was not found).
    pub exit_code: i32,
    /// Signal that ended the command, if any.
    pub signal: Option<i32>,
    /// The timeout killed the command's process group.
    pub timed_out: bool,
    /// The host cancelled the command (`Cancel`): its process group was killed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cancelled: bool,
    /// Milliseconds the command ran.
    pub duration_ms: u64,
    /// What was kept of stdout (its bytes come first in the stream).
    pub stdout: StreamInfo,
    /// What was kept of stderr (its bytes follow stdout's).
    pub stderr: StreamInfo,
}

/// Error classes: of a failed request, as the `Error` reply carries them, and of every pyro
/// error on the host (`pyro_mcp::Code` is this enum), so the guest agent, the supervisor, the
/// SDK, the CLI and the MCP server share one set and a guest's class reaches the user as it
/// was sent, with no mapping to forget. The snake_case names are stable: they are the wire
/// form, the `code` users see in JSON errors, and a code this version does not know makes a
/// frame malformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// What the request names does not exist (a workspace, a file, a shell, a service).
    NotFound,
    /// The request is refused as asked (a path outside /workspace, a bad name, a value out of
    /// its range).
    InvalidArgument,
    /// It clashes with what exists (a running service of that name, a port taken, a workspace
    /// already being stopped).
    Conflict,
    /// Not possible in the current state (a shell that has exited, a stopping workspace).
    State,
    /// The VM or its agent cannot answer (stopped, gone, not running, did not boot).
    GuestUnavailable,
    /// Something did not happen in time (a command past its timeout, a guest that stopped
    /// answering, a shell that does not read its input).
    Timeout,
    /// A cap or a resource ran out: a reply over the frame caps, too many shells or services,
    /// a file or output over its size limit, the guest out of file descriptors, processes or
    /// memory.
    LimitExceeded,
    /// Anything else that failed; the message says what.
    Internal,
    /// The caller cancelled the operation (an MCP client's `notifications/cancelled`, an SDK
    /// `Cancel`, a host `Cancel` frame); nothing half-made was left behind.
    Cancelled,
}

impl ErrorCode {
    /// Every code, in declaration order (tests walk them).
    pub const ALL: [ErrorCode; 9] = [
        ErrorCode::NotFound,
        ErrorCode::InvalidArgument,
        ErrorCode::Conflict,
        ErrorCode::State,
        ErrorCode::GuestUnavailable,
        ErrorCode::Timeout,
        ErrorCode::LimitExceeded,
        ErrorCode::Internal,
        ErrorCode::Cancelled,
    ];

    /// The wire name (the same string serde writes).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::NotFound => "not_found",
            ErrorCode::InvalidArgument => "invalid_argument",
            ErrorCode::Conflict => "conflict",
            ErrorCode::State => "state",
            ErrorCode::GuestUnavailable => "guest_unavailable",
            ErrorCode::Timeout => "timeout",
            ErrorCode::LimitExceeded => "limit_exceeded",
            ErrorCode::Internal => "internal",
            ErrorCode::Cancelled => "cancelled",
        }
    }

    /// The `pyro` CLI's exit status for an error of this class (the table in docs/cli.md).
    /// It lives with the class so that adding a class means giving it a status here.
    pub fn exit_code(self) -> i32 {
        match self {
            ErrorCode::Internal => 1,
            ErrorCode::InvalidArgument => 2,
            ErrorCode::NotFound => 3,
            ErrorCode::Conflict => 4,
            ErrorCode::State => 5,
            ErrorCode::GuestUnavailable => 6,
            ErrorCode::Timeout => 7,
            ErrorCode::LimitExceeded => 8,
            // As a shell reports a command ended by Ctrl-C.
            ErrorCode::Cancelled => 130,
        }
    }
}

/// A failed request: the `Error` reply's code and a one-line message for users (the host
/// clips it; it is peer text).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireError {
    /// The error's class.
    pub code: ErrorCode,
    /// What went wrong, for users (the host clips it).
    pub message: String,
}

impl WireError {
    /// An error of class `code`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        WireError { code, message: message.into() }
    }
    /// An `invalid_argument` error: the request is refused as asked.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidArgument, message)
    }
    /// A `not_found` error: what the request names does not exist.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }
    /// An `internal` error: anything else that failed.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Internal, message)
    }
    /// A `limit_exceeded` error: a cap or a resource ran out.
    pub fn limit(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::LimitExceeded, message)
    }
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl std::error::Error for WireError {}

/// What the agent serves, from the kernel command line's `pyro.mode=` (`probe` and `floor`
/// power off before the agent starts, so they never announce themselves).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentMode {
    /// A workspace or run VM: the disk is the root file system.
    Run,
    /// An environment build: a blank disk mounted at `/target` for unpacking.
    Builder,
    /// The stopped-disk tools: a disk mounted read-only at `/workspace`.
    Inspect,
}

/// The agent's announcement, sent unasked when it starts (request id 0) and as the reply to
/// a `Hello` request. Every protocol version's `Hello` header has `"type": "hello"` and a
/// numeric `protocol` at its top level (see [`announcement`]), so a peer of another version
/// is recognised and refused with the fix instead of failing to parse.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The protocol version the agent speaks ([`PROTOCOL_VERSION`] of its build).
    pub protocol: u32,
    /// The agent's release version (its crate version).
    pub agent_version: String,
    /// Milliseconds since the guest kernel booted (`/proc/uptime`).
    pub uptime_ms: u64,
    /// What the agent serves in this boot.
    pub mode: AgentMode,
}

/// What a running `Exec` has done so far (sent every `progress_ms`): how long it has run, how
/// much it wrote, and its last line of output (clipped, control characters removed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecProgress {
    /// Milliseconds the command has run.
    pub elapsed_ms: u64,
    /// Bytes it has written to stdout so far.
    pub stdout_bytes: u64,
    /// Bytes it has written to stderr so far.
    pub stderr_bytes: u64,
    /// Its last line of output so far (clipped, control characters removed).
    pub last_line: String,
}

/// A request: opens request id `id` (the frame's), answered by exactly one [`Reply`] with the
/// same id, possibly after [`GuestStream`] frames; some are followed by [`HostStream`] frames
/// (an upload). Most are for the guest agent; `PublishPort`, `Suspend` and `Fork` are
/// answered by the supervisor, and `Shutdown` by both (the supervisor's ends the VM).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Request {
    /// Ask the agent to announce itself (again): reply `Hello`. Carries the asker's version.
    Hello {
        /// The asker's protocol version.
        protocol: u32,
    },
    /// Reply `Pong`.
    Ping,
    /// Run a command. Streamed: `Progress` (with `progress_ms`), then stdout and stderr as
    /// `Chunk`s; reply `ExecResult`. A `Cancel` with the same id kills it.
    Exec(ExecRequest),
    /// Start unpacking a tar stream (sent as `Chunk`s then `End`) into `dest` in the guest.
    Unpack {
        /// The directory in the guest to unpack into.
        dest: String,
        /// Keep the archive's owners and extended attributes (environment builds do; seeds and
        /// syncs do not).
        preserve_owners: bool,
        /// Apply the stream as one OCI image layer onto `dest` (a root file system): the agent
        /// unpacks it chrooted into `dest`, honours whiteouts (`.wh.NAME` deletes NAME,
        /// `.wh..wh..opq` hides what lower layers put in that directory), replaces entries of
        /// another type, creates device nodes, and refuses members that climb out with `..`.
        /// Absent on the wire for plain unpacks.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        oci_layer: bool,
    },
    /// Flush and power off the guest.
    Shutdown,
    /// List a directory under /workspace (`path` absolute, inside /workspace). The entries
    /// come as a stream of JSON lines (one [`FsEntry`] each), then `FsEntries`.
    FsList {
        /// The directory to list: absolute, inside /workspace.
        path: String,
        /// List everything below it, not only its direct entries.
        recursive: bool,
        /// Stop after this many entries (the reply then says `truncated`).
        max_entries: u32,
    },
    /// Read up to `max_bytes` of a regular file from `offset`; the bytes come as a stream,
    /// then `FsData` (`truncated`: the file goes on after what was sent).
    /// With `nofollow`, a symlink at `path` is not followed: its target is the content and
    /// `mode` carries the file-type bits (`0o120000`); regular files then also report their
    /// type bits (`0o100000`).
    FsRead {
        /// The file to read.
        path: String,
        /// Bytes to send at most.
        max_bytes: u64,
        /// Do not follow a symlink at `path` (see above).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        nofollow: bool,
        /// Start reading this many bytes into the file (paging a large file).
        #[serde(default, skip_serializing_if = "is_zero")]
        offset: u64,
    },
    /// Read many regular files (below /workspace, links inside followed) in one round trip,
    /// for a diff's patch. The stream carries, per path in order, an 8-byte little-endian
    /// length and that many bytes (at most `max_each` from the start of the file), or the
    /// length [`READ_MANY_UNREADABLE`] (gone, not a regular file, ...) or
    /// [`READ_MANY_SKIPPED`] (not read: `max_total` bytes were sent already) and no bytes.
    /// At most [`MAX_READ_MANY`] paths. Reply `FsReadManyDone`.
    FsReadMany {
        /// The files, absolute, inside /workspace.
        paths: Vec<String>,
        /// Bytes to send per file at most.
        max_each: u64,
        /// Bytes to send in all at most; the files past it are skipped.
        max_total: u64,
    },
    /// Apply writes, symlinks, deletes and mode changes all or nothing. The contents of the
    /// `Write` ops follow as a stream (`Chunk`s, then `End`), concatenated in op order.
    FsBatch {
        /// The steps, applied in order, all or nothing.
        ops: Vec<FsOp>,
    },
    /// Manifest (type, mode, size, sha256) of everything under `path`, at most `max_entries`,
    /// streamed like `FsList`.
    FsManifest {
        /// The directory whose tree is listed.
        path: String,
        /// Stop after this many entries (the reply then says `truncated`).
        max_entries: u32,
        /// Hash every file again, ignoring the agent's hashes of files unchanged since
        /// (`PYRO_DIFF_TRACKING=off`: the full scan, to compare with).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        full_scan: bool,
    },
    /// Stream `path` out as a tar archive in `Chunk` frames, then `TarDone`.
    TarOut {
        /// The file or directory to archive.
        path: String,
    },
    /// Configure the guest's network (sent once after `Hello` when the VM has a NIC): bring up
    /// `lo` and the interface whose MAC is `mac` with `address` (CIDR), a default route via
    /// `gateway`, `nameservers` in the guest's resolver config, and `env` added to every
    /// command's environment (proxy variables, CA bundle paths). The payload is PEM
    /// certificates (the host's CA bundle) to trust besides the guest's own; empty for none.
    /// Reply: `NetReady`.
    NetConfig {
        /// The MAC address of the interface to configure.
        mac: String,
        /// The interface's address with its prefix length (CIDR).
        address: String,
        /// The default route's gateway.
        gateway: String,
        /// Nameservers for the guest's resolver config.
        nameservers: Vec<String>,
        /// Variables added to every later command's environment.
        env: Vec<(String, String)>,
    },
    /// Flush everything to disk and freeze (or thaw) the root file system (snapshots).
    Freeze,
    /// Thaw the root file system frozen by `Freeze`.
    Thaw,
    // --- shells ---
    /// Open an interactive shell on a PTY of `cols` x `rows` in `cwd` (default /workspace),
    /// with `env` added. Reply: `ShellInfo`.
    ShellOpen {
        /// The shell's working directory; /workspace when absent.
        cwd: Option<String>,
        /// The PTY's width in columns.
        cols: u16,
        /// The PTY's height in rows.
        rows: u16,
        /// Variables added to the shell's environment.
        env: Vec<(String, String)>,
    },
    /// Read the shell's output from `cursor` (bytes since it opened), at most `max_bytes`,
    /// after waiting until it has been quiet for `idle_ms` (0: no wait; the wait is bounded by
    /// `wait_ms`). Reply: `ShellData` with the bytes as payload.
    ShellRead {
        /// The shell's id (`shell-N`).
        shell: String,
        /// Where to read from: bytes since the shell opened.
        cursor: u64,
        /// Bytes to send at most.
        max_bytes: u64,
        /// Wait until the shell has been quiet this many milliseconds (0: no wait).
        idle_ms: u64,
        /// The longest the quiet wait may take, in milliseconds.
        wait_ms: u64,
    },
    /// Send the payload to the shell's input. Reply: `ShellInfo`.
    ShellWrite {
        /// The shell's id.
        shell: String,
    },
    /// Send `signal` to the shell's foreground process group. Reply: `ShellInfo`.
    ShellSignal {
        /// The shell's id.
        shell: String,
        /// The signal's number.
        signal: i32,
    },
    /// Change the PTY size (the foreground job gets SIGWINCH). Reply: `ShellInfo`.
    ShellResize {
        /// The shell's id.
        shell: String,
        /// The PTY's new width in columns.
        cols: u16,
        /// The PTY's new height in rows.
        rows: u16,
    },
    /// Reply: `ShellListReply`.
    ShellList,
    /// Hang the shell up (its session gets SIGHUP, then SIGKILL) and forget it. Reply:
    /// `ShellInfo` as it was when closed.
    ShellClose {
        /// The shell's id.
        shell: String,
    },
    // --- services ---
    /// Start a long-running service (a child of the agent, in its own process group). The
    /// reply (`ServiceReply`) comes as soon as it is spawned; readiness is probed by the agent
    /// and seen through `ServiceStatus`. A live service of the same name is a `conflict`.
    ServiceStart(ServiceSpec),
    /// One service's state (`name`), or all of them: reply `ServiceList`.
    ServiceStatus {
        /// The service to report; all of them when absent.
        name: Option<String>,
    },
    /// The end of a service's log rings: the last `tail_lines` lines of each stream, or all
    /// that the rings hold. Reply `ServiceLogData`, the bytes in its payload (stdout, then
    /// stderr; a ring holds at most 1 MiB, so both fit one frame).
    ServiceLogs {
        /// The service's name.
        name: String,
        /// Lines to send from the end of each stream (ignored with `all`).
        tail_lines: u64,
        /// Send everything the rings hold.
        all: bool,
    },
    /// Stop a service: TERM to its process group, KILL after `grace_ms`; the reply
    /// (`ServiceReply`) comes once no process of the group is left.
    ServiceStop {
        /// The service's name.
        name: String,
        /// Milliseconds between TERM and KILL.
        grace_ms: u64,
    },
    /// Supervisor-level: publish one more guest port on the host's 127.0.0.1 while the VM runs
    /// (`host_port` 0 picks a free one). Reply `PortPublished`, or an error (the policy has no
    /// published ports, the host port is taken).
    PublishPort {
        /// The port in the guest.
        guest_port: u16,
        /// The port on the host's 127.0.0.1 (0: pick a free one).
        host_port: u16,
    },
    /// Set the guest's wall clock (after a restore from saved memory the guest's clock is as
    /// old as the save). Reply `Ok`.
    SetClock {
        /// The wall-clock time to set, in nanoseconds since the Unix epoch.
        unix_ns: u64,
    },
    /// Supervisor-level: save the running guest's memory and device state to `path` (written
    /// as `path.part`, renamed when complete), then end QEMU and the supervisor: the
    /// workspace is stopped. Refused while other requests are in flight. Reply `Suspended`.
    Suspend {
        /// Where to write the saved state (on the host).
        path: String,
    },
    /// Supervisor-level, for `workspace fork`: pause the guest, switch its disk writes to the
    /// existing empty overlay `layer` (whose backing is the layer written until now, which
    /// becomes frozen), save memory and device state to `path` (as `Suspend` does), and let
    /// the guest run on. The frozen layer and the saved state are one consistent moment.
    /// Refused while other requests are in flight. Reply `Suspended`.
    Fork {
        /// Where to write the saved state (on the host).
        path: String,
        /// The empty overlay the guest's disk writes switch to (on the host).
        layer: String,
    },
    /// Make this guest its own before its first command (after a cold boot, and after a
    /// restore from a warm template or a fork, whose memory other guests share): mix the
    /// payload (fresh host entropy, [`IDENTITY_ENTROPY`] bytes) into the kernel's pool and
    /// reseed its generator, set the clock, the hostname and `/etc/machine-id` (32 lowercase
    /// hex digits). Reply `Ok`.
    Identity {
        /// The wall-clock time to set, in nanoseconds since the Unix epoch.
        unix_ns: u64,
        /// The guest's new hostname.
        hostname: String,
        /// The guest's new machine id.
        machine_id: String,
    },
}

impl Request {
    /// Requests followed by an upload (`Chunk`s, then `End`) from the host.
    pub fn opens_stream(&self) -> bool {
        matches!(self, Request::Unpack { .. } | Request::FsBatch { .. })
    }

    /// The wire name of the request (`exec`, `fs_read`, ...), for messages about it.
    pub fn name(&self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.get("type").and_then(|t| t.as_str()).map(str::to_string))
            .unwrap_or_default()
    }
}

/// The one final answer to a request (same id). Nothing follows it for that id.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Reply {
    /// The agent's announcement (also sent unasked at start, id 0).
    Hello(Hello),
    /// The answer to `Ping`: the agent is alive and reading.
    Pong,
    /// Done, nothing to report (`Shutdown`, `Freeze`, `Thaw`, `SetClock`, `Identity`).
    Ok,
    /// The request failed.
    Error(WireError),
    /// Final reply of `Exec`: the captured stdout then stderr bytes came first as a stream
    /// (`stdout.len + stderr.len` bytes in all).
    ExecResult(ExecResult),
    /// Final reply of `Unpack`: what was unpacked.
    Unpacked {
        /// Entries unpacked.
        entries: u64,
        /// Bytes of file data unpacked.
        bytes: u64,
    },
    /// Final reply of `FsList` and `FsManifest`: how many entries the stream carried, and
    /// whether the walk stopped at `max_entries`.
    FsEntries {
        /// Entries the stream carried.
        count: u64,
        /// The walk stopped at `max_entries`.
        truncated: bool,
    },
    /// Final reply of `FsRead`: the file's bytes came first as a stream.
    FsData {
        /// The file's size in bytes.
        size: u64,
        /// The file goes on after what was sent.
        truncated: bool,
        /// What was sent has NUL bytes or is not UTF-8.
        binary: bool,
        /// The file's permission bits (with the file-type bits for a read with `nofollow`).
        mode: u32,
    },
    /// Final reply of `FsReadMany`: how many paths the stream answered.
    FsReadManyDone {
        /// Paths answered (all of those asked for).
        count: u64,
    },
    /// Final reply of `FsBatch`: what was applied.
    FsBatchDone {
        /// Files and symlinks written.
        written: u64,
        /// Entries deleted.
        deleted: u64,
    },
    /// Final reply of `TarOut`: what the archive held.
    TarDone {
        /// Entries archived.
        entries: u64,
        /// Bytes of file data archived.
        bytes: u64,
    },
    /// Reply of `NetConfig`: the guest's network is up.
    NetReady {
        /// The interface that was configured, e.g. `eth0`.
        interface: String,
        /// Where the combined CA bundle is in the guest, if one was installed.
        ca_bundle: Option<String>,
    },
    /// Reply of the shell requests that report one shell: its state after the request.
    ShellInfo(ShellInfo),
    /// Reply of `ShellRead`: the output is the payload.
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
        /// The shell is still running.
        alive: bool,
        /// How the shell exited; None while it runs.
        exit_code: Option<i32>,
    },
    /// Reply of `ShellList`.
    ShellListReply {
        /// Every shell the agent knows (exited ones too, until closed), oldest first.
        shells: Vec<ShellInfo>,
    },
    /// Reply of `ServiceStart` and `ServiceStop`.
    ServiceReply {
        /// The guest's boot id (`/proc/sys/kernel/random/boot_id`).
        boot_id: String,
        /// The service's state after the request.
        service: ServiceState,
    },
    /// Reply of `ServiceStatus`.
    ServiceList {
        /// `/proc/sys/kernel/random/boot_id`: a service recorded under another boot is lost.
        boot_id: String,
        /// The services asked for.
        services: Vec<ServiceState>,
    },
    /// Reply of `ServiceLogs`: stdout then stderr bytes are the payload.
    ServiceLogData {
        /// The service's state.
        service: ServiceState,
        /// Bytes of stdout at the start of the payload.
        stdout_len: u64,
        /// Bytes of stderr after them.
        stderr_len: u64,
    },
    /// Reply of `PublishPort`: where the port is reachable.
    PortPublished {
        /// The host address it is published on (`127.0.0.1`).
        host: String,
        /// The port on the host.
        host_port: u16,
        /// The port in the guest.
        guest_port: u16,
    },
    /// Reply of `Suspend` and `Fork`: the saved state is complete.
    Suspended {
        /// Bytes of memory and device state written.
        bytes: u64,
        /// Milliseconds the save took.
        ms: u64,
    },
}

/// Host to guest, on a request in flight (the frame's id is that request's).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum HostStream {
    /// The next piece of an upload (the bytes are the payload).
    Chunk,
    /// The upload is complete.
    End,
    /// Kill a running `Exec`'s process group now. No reply of its own; the `Exec` ends with
    /// `cancelled` set. Unknown or finished ids are ignored.
    Cancel,
}

/// Guest to host, on a request in flight, before its reply.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum GuestStream {
    /// The next piece of a streamed reply (the bytes are the payload).
    Chunk,
    /// While an `Exec` with `progress_ms` runs. Not a final reply.
    Progress(ExecProgress),
}

/// Every frame the host side (a client to the supervisor, the supervisor to the agent) sends.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "frame", rename_all = "snake_case")]
pub enum ToGuest {
    /// A request, opening its id.
    Request(Request),
    /// A stream frame on a request in flight.
    Stream(HostStream),
}

/// Every frame the guest side (the agent to the supervisor, the supervisor to a client)
/// sends.
// A frame is decoded, handled and dropped one at a time: boxing the larger `Reply` would only
// add an allocation per frame.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "frame", rename_all = "snake_case")]
pub enum ToHost {
    /// The final reply to a request.
    Reply(Reply),
    /// A stream frame before a request's reply.
    Stream(GuestStream),
}

impl From<Request> for ToGuest {
    fn from(r: Request) -> Self {
        ToGuest::Request(r)
    }
}

impl From<HostStream> for ToGuest {
    fn from(s: HostStream) -> Self {
        ToGuest::Stream(s)
    }
}

impl From<Reply> for ToHost {
    fn from(r: Reply) -> Self {
        ToHost::Reply(r)
    }
}

impl From<GuestStream> for ToHost {
    fn from(s: GuestStream) -> Self {
        ToHost::Stream(s)
    }
}

impl From<WireError> for Reply {
    fn from(e: WireError) -> Self {
        Reply::Error(e)
    }
}

impl From<WireError> for ToHost {
    fn from(e: WireError) -> Self {
        ToHost::Reply(Reply::Error(e))
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::ToGuest {}
    impl Sealed for super::ToHost {}
}

/// The two frame types that go on the wire, one per direction: [`encode`] and [`read_frame`]
/// take nothing else, so a bare `Request` or `Reply` can never be sent untagged.
pub trait Wire: Serialize + serde::de::DeserializeOwned + sealed::Sealed {}
impl Wire for ToGuest {}
impl Wire for ToHost {}

/// What a `Hello` header of any protocol version says about its sender (see [`announcement`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announcement {
    /// The protocol version the sender speaks.
    pub protocol: u32,
    /// The sender's release version (at most 64 characters; empty when it sent none).
    pub agent_version: String,
}

/// Read a frame header as any version's `Hello`: `"type": "hello"` and a numeric `protocol` at
/// its top level (version 6 and older had no `frame` field; this version adds one, and later
/// versions keep these two fields). None for anything else. Used at boot, before the header is
/// decoded as this version's frames, so an agent of another version gets the error that says
/// the fix rather than "malformed frame".
pub fn announcement(header: &[u8]) -> Option<Announcement> {
    #[derive(Deserialize)]
    struct Any {
        #[serde(rename = "type")]
        kind: String,
        protocol: u32,
        #[serde(default)]
        agent_version: String,
    }
    let a: Any = serde_json::from_slice(header).ok()?;
    (a.kind == "hello")
        .then(|| Announcement { protocol: a.protocol, agent_version: a.agent_version.chars().take(64).collect() })
}

/// Bytes of host entropy an `Identity` request carries.
pub const IDENTITY_ENTROPY: usize = 64;

/// One shell as the guest reports it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ShellInfo {
    /// The shell's id (`shell-N`).
    pub shell_id: String,
    /// The shell's process id in the guest.
    pub pid: i32,
    /// The shell's working directory when it opened.
    pub cwd: String,
    /// The PTY's width in columns.
    pub cols: u16,
    /// The PTY's height in rows.
    pub rows: u16,
    /// The shell is still running.
    pub alive: bool,
    /// How the shell exited; None while it runs.
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
    File {
        /// The file to wait for.
        path: String,
    },
    /// A TCP connection to `host:port` (an IP address) succeeds.
    Tcp {
        /// The IP address to connect to.
        host: String,
        /// The port to connect to.
        port: u16,
    },
    /// `GET` of an `http://` URL (IP host) answers 2xx or 3xx.
    Http {
        /// The URL to fetch.
        url: String,
    },
    /// The shell command exits 0.
    Command {
        /// The command, run with /bin/sh -c.
        command: String,
    },
}

impl Readiness {
    /// One line for status and summaries, e.g. `tcp 127.0.0.1:8080`.
    pub fn display(&self) -> String {
        match self {
            Readiness::File { path } => format!("file {path}"),
            Readiness::Tcp { host, port } => format!("tcp {host}:{port}"),
            Readiness::Http { url } => format!("http {url}"),
            Readiness::Command { command } => format!("command {command}"),
        }
    }
}

/// What `ServiceStart` runs and how it is watched.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ServiceSpec {
    /// The service's name, unique among the agent's live services.
    pub name: String,
    /// The command to run.
    pub command: Command,
    /// Working directory in the guest; the agent defaults it to `/workspace`.
    pub cwd: Option<String>,
    /// Extra environment for the process (the request's variables win over the defaults).
    pub env: Vec<(String, String)>,
    /// How the agent decides the service is ready; none: ready once spawned.
    pub readiness: Option<Readiness>,
    /// Milliseconds to wait for readiness before the agent stops it as `failed`.
    pub ready_timeout_ms: u64,
    /// Milliseconds between readiness probes.
    pub ready_interval_ms: u64,
    /// Restart after a failing exit (with a backoff), at most `max_restarts` times.
    pub restart_on_failure: bool,
    /// Restarts allowed with `restart_on_failure` (the agent caps it too).
    pub max_restarts: u32,
    /// Grace between TERM and KILL when the agent itself stops it (not ready in time).
    pub stop_grace_ms: u64,
}

/// A service as the agent sees it. Times are ages (ms before the reply), so the host can
/// place them on its own clock whatever the guest's says.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct ServiceState {
    /// The service's name.
    pub name: String,
    /// The command, on one line.
    pub command: String,
    /// The directory it runs in.
    pub cwd: String,
    /// Where it is in its life.
    pub state: ServicePhase,
    /// Its process id while it runs.
    pub pid: Option<i32>,
    /// Its readiness check, if it has one.
    pub readiness: Option<Readiness>,
    /// The last readiness probe's result (`ok`, or why it failed).
    pub last_probe: Option<String>,
    /// Its exit code, once it exited.
    pub exit_code: Option<i32>,
    /// The signal that ended it, if one did.
    pub signal: Option<i32>,
    /// Why it is no longer running, in one line.
    pub stop_reason: Option<String>,
    /// How many times it was restarted.
    pub restarts: u32,
    /// Milliseconds since it was (last) started.
    pub started_ago_ms: u64,
    /// Milliseconds since it became ready.
    pub ready_ago_ms: Option<u64>,
    /// Milliseconds since it ended.
    pub ended_ago_ms: Option<u64>,
    /// Bytes it has written to stdout in all.
    pub stdout_bytes: u64,
    /// Bytes it has written to stderr in all.
    pub stderr_bytes: u64,
    /// Bytes of stdout that fell out of its bounded log ring.
    pub stdout_dropped: u64,
    /// Bytes of stderr that fell out of its ring.
    pub stderr_dropped: u64,
}

impl ServiceState {
    /// Starting or ready: something of it runs (or is about to run again).
    pub fn is_live(&self) -> bool {
        self.state.is_live()
    }
}

/// Where a service is in its life, as the agent sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServicePhase {
    /// Spawned (or waiting to restart), readiness not yet seen.
    #[default]
    Starting,
    /// Its readiness check passed (at once when it has none).
    Ready,
    /// Ended on its own with status 0.
    Exited,
    /// A non-zero status, a signal, not ready in time, or restarts used up.
    Failed,
    /// Stopped on request.
    Stopped,
}

impl ServicePhase {
    /// The wire name, which the host also shows and records.
    pub fn as_str(self) -> &'static str {
        match self {
            ServicePhase::Starting => "starting",
            ServicePhase::Ready => "ready",
            ServicePhase::Exited => "exited",
            ServicePhase::Failed => "failed",
            ServicePhase::Stopped => "stopped",
        }
    }

    /// Starting or ready: something of it runs (or is about to run again).
    pub fn is_live(self) -> bool {
        matches!(self, ServicePhase::Starting | ServicePhase::Ready)
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
    /// What the entry is.
    pub kind: EntryKind,
    /// Permission bits (`0o7777` at most).
    pub mode: u32,
    /// Size in bytes.
    pub size: u64,
    /// Where a symlink points, as written in it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// sha256 of a regular file's content (manifests only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

/// The type of a file-system entry (its wire names are those of older manifests).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
    /// Devices, FIFOs, sockets.
    Other,
}

impl EntryKind {
    /// The wire name (`file`, `dir`, `symlink`, `other`).
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::File => "file",
            EntryKind::Dir => "dir",
            EntryKind::Symlink => "symlink",
            EntryKind::Other => "other",
        }
    }
}

/// One step of an all-or-nothing file batch.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum FsOp {
    /// Write `len` payload bytes to `path` atomically; `mode` None keeps an existing file's
    /// mode (new files get 0644). Parents are created.
    Write {
        /// The file to write.
        path: String,
        /// How many bytes of the batch's payload stream are its content.
        len: u64,
        /// The file's permission bits.
        mode: Option<u32>,
    },
    /// Create (or replace) a symlink at `path` pointing at `target`.
    Symlink {
        /// Where the link goes.
        path: String,
        /// What the link points at, written as is.
        target: String,
    },
    /// Delete a file or a symlink.
    Delete {
        /// What to delete.
        path: String,
    },
    /// Change an entry's permission bits.
    Chmod {
        /// The entry to change.
        path: String,
        /// Its new permission bits.
        mode: u32,
    },
}

/// One decoded frame: a [`ToGuest`] or a [`ToHost`].
#[derive(Debug, Clone)]
pub struct Frame<M> {
    /// The request id the frame belongs to.
    pub id: u32,
    /// The decoded header.
    pub msg: M,
    /// The raw payload (output, file bytes, archive chunks).
    pub payload: Vec<u8>,
}

/// One frame read off the wire with its lengths checked but its header not yet decoded.
#[derive(Debug, Clone)]
pub struct RawFrame {
    /// The request id the frame belongs to.
    pub id: u32,
    /// The JSON header, undecoded.
    pub header: Vec<u8>,
    /// The raw payload.
    pub payload: Vec<u8>,
}

impl RawFrame {
    /// Decode the header as this version's frames of one direction.
    pub fn decode<M: Wire>(self) -> Result<Frame<M>, FrameError> {
        let msg = self.message()?;
        Ok(Frame { id: self.id, msg, payload: self.payload })
    }

    /// The header as a frame of one direction, leaving the raw frame as it is (so a caller can
    /// still look at a header it could not decode).
    pub fn message<M: Wire>(&self) -> Result<M, FrameError> {
        // serde quotes what it could not parse: the peer's bytes, so clip them.
        serde_json::from_slice(&self.header).map_err(|e| {
            FrameError::Protocol(format!("bad header: {}", e.to_string().chars().take(200).collect::<String>()))
        })
    }
}

/// Why a frame could not be read or written.
#[derive(Debug)]
pub enum FrameError {
    /// Reading or writing failed (the peer went away, a timeout).
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
pub fn encode<M: Wire>(id: u32, msg: &M, payload: &[u8]) -> Result<Vec<u8>, FrameError> {
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

/// Encode a frame and write it at once, then flush.
pub fn write_frame<M: Wire>(w: &mut impl Write, id: u32, msg: &M, payload: &[u8]) -> Result<(), FrameError> {
    w.write_all(&encode(id, msg, payload)?)?;
    w.flush()?;
    Ok(())
}

/// Read one frame of direction `M`. `Ok(None)` means a clean end of stream before any byte of
/// a frame.
pub fn read_frame<M: Wire>(r: &mut impl Read) -> Result<Option<Frame<M>>, FrameError> {
    read_raw_frame(r)?.map(RawFrame::decode).transpose()
}

/// Read one frame without decoding its header (lengths are checked against the caps before
/// anything is allocated). `Ok(None)` means a clean end of stream before any byte of a frame.
pub fn read_raw_frame(r: &mut impl Read) -> Result<Option<RawFrame>, FrameError> {
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
    let mut payload = vec![0u8; plen];
    r.read_exact(&mut payload)?;
    Ok(Some(RawFrame { id, header, payload }))
}

/// A `Write` that cuts a byte stream into pieces of at most [`CHUNK`] bytes and hands each to
/// `send` (which puts it in a `Chunk` frame). Call `flush` at the end for the last piece.
pub struct ChunkWriter<F: FnMut(&[u8]) -> io::Result<()>> {
    send: F,
    buf: Vec<u8>,
}

impl<F: FnMut(&[u8]) -> io::Result<()>> ChunkWriter<F> {
    /// A writer that hands each full chunk, and the rest at `flush`, to `send`.
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
    /// A splitter refusing lines longer than `max_line` bytes.
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
    /// A buffer keeping at most `cap` bytes: the first half and the last half of the stream.
    pub fn new(cap: usize) -> Self {
        HeadTail { cap, head: Vec::new(), tail: std::collections::VecDeque::new(), total: 0 }
    }

    /// Feed the next bytes of the stream.
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

    /// Bytes fed in all, kept or not.
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

    /// Decode one encoded frame of direction `M`.
    fn decoded<M: Wire>(buf: &[u8]) -> Result<Frame<M>, FrameError> {
        read_frame::<M>(&mut &buf[..]).map(|f| f.expect("a frame"))
    }

    #[test]
    fn unpack_without_oci_flag_leaves_the_field_out() {
        let plain = ToGuest::from(Request::Unpack { dest: "/target".into(), preserve_owners: true, oci_layer: false });
        let json = serde_json::to_string(&plain).unwrap();
        assert!(!json.contains("oci_layer"), "{json}");
        let read: ToGuest =
            serde_json::from_str(r#"{"frame":"request","type":"unpack","dest":"/w","preserve_owners":false}"#).unwrap();
        assert_eq!(read, Request::Unpack { dest: "/w".into(), preserve_owners: false, oci_layer: false }.into());
        let oci = ToGuest::from(Request::Unpack { dest: "/target".into(), preserve_owners: true, oci_layer: true });
        assert_eq!(serde_json::from_str::<ToGuest>(&serde_json::to_string(&oci).unwrap()).unwrap(), oci);
    }

    /// The header shapes are the protocol: pinned here so a rename shows up as a failing test
    /// (and a protocol version bump), not as a silent incompatibility.
    #[test]
    fn wire_shapes_are_pinned() {
        let json = |m: &dyn erased::Json| m.json();
        assert_eq!(json(&ToGuest::from(Request::Ping)), r#"{"frame":"request","type":"ping"}"#);
        assert_eq!(json(&ToGuest::from(HostStream::Cancel)), r#"{"frame":"stream","type":"cancel"}"#);
        assert_eq!(json(&ToHost::from(GuestStream::Chunk)), r#"{"frame":"stream","type":"chunk"}"#);
        assert_eq!(
            json(&ToHost::from(WireError::limit("too many"))),
            r#"{"frame":"reply","type":"error","code":"limit_exceeded","message":"too many"}"#
        );
        let hello = Hello { protocol: 7, agent_version: "4.3.0".into(), uptime_ms: 5, mode: AgentMode::Inspect };
        assert_eq!(
            json(&ToHost::from(Reply::Hello(hello))),
            r#"{"frame":"reply","type":"hello","protocol":7,"agent_version":"4.3.0","uptime_ms":5,"mode":"inspect"}"#
        );
        let progress = ExecProgress { elapsed_ms: 1, stdout_bytes: 2, stderr_bytes: 3, last_line: "x".into() };
        assert_eq!(
            json(&ToHost::from(GuestStream::Progress(progress))),
            r#"{"frame":"stream","type":"progress","elapsed_ms":1,"stdout_bytes":2,"stderr_bytes":3,"last_line":"x"}"#
        );
        for code in ErrorCode::ALL {
            assert_eq!(serde_json::to_string(&code).unwrap(), format!("\"{}\"", code.as_str()));
        }
        // Each class has its own CLI exit status, none of them success.
        let statuses: std::collections::BTreeSet<i32> = ErrorCode::ALL.iter().map(|c| c.exit_code()).collect();
        assert_eq!(statuses.len(), ErrorCode::ALL.len());
        assert!(!statuses.contains(&0));
        for (k, s) in [(EntryKind::File, "file"), (EntryKind::Dir, "dir"), (EntryKind::Symlink, "symlink")] {
            assert_eq!((serde_json::to_string(&k).unwrap(), k.as_str()), (format!("\"{s}\""), s));
        }
        assert_eq!(EntryKind::Other.as_str(), "other");
        for p in [ServicePhase::Starting, ServicePhase::Ready, ServicePhase::Exited, ServicePhase::Failed] {
            assert_eq!(serde_json::to_string(&p).unwrap(), format!("\"{}\"", p.as_str()));
        }
        assert_eq!(ServicePhase::Stopped.as_str(), "stopped");
        assert!(ServicePhase::Ready.is_live() && !ServicePhase::Stopped.is_live());
        assert_eq!(Request::FsBatch { ops: vec![] }.name(), "fs_batch");
        assert!(Request::FsBatch { ops: vec![] }.opens_stream() && !Request::Ping.opens_stream());
    }

    mod erased {
        /// Serialize any wire value to compact JSON (the tests compare strings).
        pub trait Json {
            fn json(&self) -> String;
        }
        impl<T: serde::Serialize> Json for T {
            fn json(&self) -> String {
                serde_json::to_string(self).unwrap()
            }
        }
    }

    #[test]
    fn frames_of_one_direction_are_refused_in_the_other() {
        let req = encode(1, &ToGuest::from(Request::Ping), &[]).unwrap();
        assert!(matches!(decoded::<ToHost>(&req), Err(FrameError::Protocol(_))));
        let rep = encode(1, &ToHost::from(Reply::Pong), &[]).unwrap();
        assert!(matches!(decoded::<ToGuest>(&rep), Err(FrameError::Protocol(_))));
        // A v6 header (no `frame` field) is not a frame of this version.
        let old = br#"{"type":"ping"}"#;
        assert!(serde_json::from_slice::<ToGuest>(old).is_err());
        // Unknown error codes, modes and kinds are malformed, not mapped to a default.
        for bad in [
            r#"{"frame":"reply","type":"error","code":"oops","message":"m"}"#,
            r#"{"frame":"reply","type":"hello","protocol":7,"agent_version":"x","uptime_ms":1,"mode":"probe"}"#,
        ] {
            assert!(serde_json::from_str::<ToHost>(bad).is_err(), "{bad}");
        }
        assert!(serde_json::from_str::<FsEntry>(r#"{"path":"a","kind":"fifo","mode":0,"size":0}"#).is_err());
    }

    #[test]
    fn any_versions_hello_is_recognised() {
        // Version 6's Hello, as a 4.3.0 agent sends it.
        let v6 = br#"{"type":"hello","protocol":6,"agent_version":"4.3.0","uptime_ms":1800,"mode":"run"}"#;
        assert_eq!(announcement(v6), Some(Announcement { protocol: 6, agent_version: "4.3.0".into() }));
        let hello =
            Hello { protocol: PROTOCOL_VERSION, agent_version: "x".repeat(500), uptime_ms: 1, mode: AgentMode::Run };
        let now = serde_json::to_vec(&ToHost::from(Reply::Hello(hello))).unwrap();
        let a = announcement(&now).unwrap();
        assert_eq!((a.protocol, a.agent_version.len()), (PROTOCOL_VERSION, 64), "the version string is clipped");
        for other in
            [&br#"{"type":"pong"}"#[..], br#"{"type":"hello"}"#, br#"{"type":"hello","protocol":"7"}"#, b"[]", b"\xff"]
        {
            assert_eq!(announcement(other), None, "{}", String::from_utf8_lossy(other));
        }
    }

    #[test]
    fn frame_roundtrip() {
        let msg = ToGuest::from(Request::Exec(ExecRequest {
            command: Command::Argv(vec!["echo".into(), "hi".into()]),
            cwd: None,
            env: vec![("A".into(), "b".into())],
            timeout_ms: 5,
            max_output_bytes: 10,
            progress_ms: 0,
        }));
        let buf = encode(7, &msg, b"payload").unwrap();
        let f = decoded::<ToGuest>(&buf).unwrap();
        assert_eq!(f.id, 7);
        assert_eq!(f.msg, msg);
        assert_eq!(f.payload, b"payload");
        assert!(read_frame::<ToGuest>(&mut &b""[..]).unwrap().is_none());
    }

    #[test]
    fn oversize_frame_refused() {
        let mut buf = Vec::new();
        buf.extend_from_slice(&(u32::MAX).to_be_bytes());
        buf.extend_from_slice(&0u32.to_be_bytes());
        buf.extend_from_slice(&0u32.to_be_bytes());
        assert!(matches!(read_frame::<ToHost>(&mut &buf[..]), Err(FrameError::Protocol(_))));
    }

    #[test]
    fn truncated_frame_is_error() {
        let buf = encode(1, &ToGuest::from(Request::Ping), b"abc").unwrap();
        assert!(read_frame::<ToGuest>(&mut &buf[..buf.len() - 1]).is_err());
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
        assert!(matches!(encode(1, &ToHost::from(GuestStream::Chunk), &big), Err(FrameError::TooLarge(_))));
        let env = vec![("K".to_string(), "v".repeat(MAX_HEADER))];
        let msg = ToGuest::from(Request::Exec(ExecRequest {
            command: Command::Shell("true".into()),
            cwd: None,
            env,
            timeout_ms: 1,
            max_output_bytes: 1,
            progress_ms: 0,
        }));
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
        let m = ToGuest::from(Request::ServiceStart(spec));
        let buf = encode(3, &m, &[]).unwrap();
        assert_eq!(decoded::<ToGuest>(&buf).unwrap().msg, m);
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

        fn code() -> impl Strategy<Value = ErrorCode> {
            proptest::sample::select(ErrorCode::ALL.to_vec())
        }

        fn phase() -> impl Strategy<Value = ServicePhase> {
            proptest::sample::select(vec![
                ServicePhase::Starting,
                ServicePhase::Ready,
                ServicePhase::Exited,
                ServicePhase::Failed,
                ServicePhase::Stopped,
            ])
        }

        fn mode() -> impl Strategy<Value = AgentMode> {
            proptest::sample::select(vec![AgentMode::Run, AgentMode::Builder, AgentMode::Inspect])
        }

        fn command() -> impl Strategy<Value = Command> {
            prop_oneof![
                ".{0,40}".prop_map(Command::Shell),
                proptest::collection::vec(".{0,12}", 0..4).prop_map(Command::Argv),
            ]
        }

        /// A spread of requests: every field shape the enum uses (strings, options, vectors,
        /// nested enums, defaulted fields).
        fn request() -> impl Strategy<Value = Request> {
            prop_oneof![
                any::<u32>().prop_map(|protocol| Request::Hello { protocol }),
                Just(Request::Ping),
                (
                    command(),
                    proptest::option::of(".{0,20}"),
                    proptest::collection::vec((".{0,8}", ".{0,8}"), 0..3),
                    any::<u64>(),
                    any::<u64>(),
                    any::<u64>()
                )
                    .prop_map(|(command, cwd, env, timeout_ms, max_output_bytes, progress_ms)| {
                        Request::Exec(ExecRequest { command, cwd, env, timeout_ms, max_output_bytes, progress_ms })
                    }),
                (".{0,30}", any::<bool>(), any::<bool>()).prop_map(|(dest, preserve_owners, oci_layer)| {
                    Request::Unpack { dest, preserve_owners, oci_layer }
                }),
                (".{0,30}", any::<u64>(), any::<bool>(), any::<u64>()).prop_map(
                    |(path, max_bytes, nofollow, offset)| Request::FsRead { path, max_bytes, nofollow, offset }
                ),
                proptest::collection::vec((".{0,20}", any::<u64>(), proptest::option::of(any::<u32>())), 0..4)
                    .prop_map(|w| {
                        Request::FsBatch {
                            ops: w.into_iter().map(|(path, len, mode)| FsOp::Write { path, len, mode }).collect(),
                        }
                    }),
                (proptest::option::of(".{0,20}"), any::<u16>(), any::<u16>())
                    .prop_map(|(cwd, cols, rows)| Request::ShellOpen { cwd, cols, rows, env: vec![] }),
                (".{0,20}", any::<u64>(), any::<u64>(), any::<u64>(), any::<u64>()).prop_map(
                    |(shell, cursor, max_bytes, idle_ms, wait_ms)| Request::ShellRead {
                        shell,
                        cursor,
                        max_bytes,
                        idle_ms,
                        wait_ms
                    }
                ),
                proptest::option::of(".{0,20}").prop_map(|name| Request::ServiceStatus { name }),
                (".{0,20}", any::<u64>()).prop_map(|(name, grace_ms)| Request::ServiceStop { name, grace_ms }),
                (any::<u16>(), any::<u16>())
                    .prop_map(|(guest_port, host_port)| Request::PublishPort { guest_port, host_port }),
                (any::<u64>(), ".{0,20}", "[0-9a-f]{32}")
                    .prop_map(|(unix_ns, hostname, machine_id)| Request::Identity { unix_ns, hostname, machine_id }),
                Just(Request::Freeze),
                Just(Request::ShellList),
            ]
        }

        fn service() -> impl Strategy<Value = ServiceState> {
            (".{0,20}", phase(), proptest::option::of(any::<i32>()), proptest::option::of(".{0,20}"), any::<u64>())
                .prop_map(|(name, state, exit_code, stop_reason, stdout_bytes)| ServiceState {
                    name,
                    state,
                    exit_code,
                    stop_reason,
                    stdout_bytes,
                    ..ServiceState::default()
                })
        }

        fn reply() -> impl Strategy<Value = Reply> {
            prop_oneof![
                (any::<u32>(), ".{0,20}", any::<u64>(), mode()).prop_map(
                    |(protocol, agent_version, uptime_ms, mode)| {
                        Reply::Hello(Hello { protocol, agent_version, uptime_ms, mode })
                    }
                ),
                Just(Reply::Pong),
                Just(Reply::Ok),
                (code(), ".{0,80}").prop_map(|(code, message)| Reply::Error(WireError { code, message })),
                (
                    any::<i32>(),
                    proptest::option::of(any::<i32>()),
                    any::<bool>(),
                    any::<bool>(),
                    any::<u64>(),
                    any::<u64>()
                )
                    .prop_map(|(exit_code, signal, timed_out, cancelled, duration_ms, len)| {
                        Reply::ExecResult(ExecResult {
                            exit_code,
                            signal,
                            timed_out,
                            cancelled,
                            duration_ms,
                            stdout: StreamInfo { len, total_bytes: len, truncated: false },
                            stderr: StreamInfo::default(),
                        })
                    }),
                (any::<u64>(), any::<bool>()).prop_map(|(count, truncated)| Reply::FsEntries { count, truncated }),
                (any::<u64>(), any::<bool>(), any::<bool>(), any::<u32>())
                    .prop_map(|(size, truncated, binary, mode)| Reply::FsData { size, truncated, binary, mode }),
                (".{0,20}", proptest::collection::vec(service(), 0..3))
                    .prop_map(|(boot_id, services)| Reply::ServiceList { boot_id, services }),
                (".{0,20}", service()).prop_map(|(boot_id, service)| Reply::ServiceReply { boot_id, service }),
                (any::<u64>(), any::<u64>(), any::<bool>(), proptest::option::of(any::<i32>())).prop_map(
                    |(cursor, end, alive, exit_code)| Reply::ShellData {
                        cursor,
                        next_cursor: cursor,
                        end,
                        dropped: 0,
                        idle: alive,
                        alive,
                        exit_code
                    }
                ),
                (any::<u64>(), any::<u64>()).prop_map(|(bytes, ms)| Reply::Suspended { bytes, ms }),
            ]
        }

        fn to_guest() -> impl Strategy<Value = ToGuest> {
            prop_oneof![
                4 => request().prop_map(ToGuest::Request),
                1 => proptest::sample::select(vec![HostStream::Chunk, HostStream::End, HostStream::Cancel]).prop_map(ToGuest::Stream),
            ]
        }

        fn to_host() -> impl Strategy<Value = ToHost> {
            prop_oneof![
                4 => reply().prop_map(ToHost::Reply),
                1 => Just(ToHost::Stream(GuestStream::Chunk)),
                1 => (any::<u64>(), any::<u64>(), ".{0,40}").prop_map(|(elapsed_ms, stdout_bytes, last_line)| {
                    ToHost::Stream(GuestStream::Progress(ExecProgress { elapsed_ms, stdout_bytes, stderr_bytes: 0, last_line }))
                }),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 4000, ..ProptestConfig::default() })]

            /// Arbitrary bytes never panic the decoder (either direction), and never make it
            /// allocate past the caps.
            #[test]
            fn decoder_survives_garbage(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
                for host_side in [false, true] {
                    let mut r = &bytes[..];
                    for _ in 0..8 {
                        let more = if host_side {
                            matches!(read_frame::<ToHost>(&mut r), Ok(Some(_)))
                        } else {
                            matches!(read_frame::<ToGuest>(&mut r), Ok(Some(_)))
                        };
                        if !more {
                            break;
                        }
                    }
                }
                let _ = announcement(&bytes);
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
                let g = read_frame::<ToGuest>(&mut &buf[..]).map(|_| ());
                let h2 = read_frame::<ToHost>(&mut &buf[..]).map(|_| ());
                for r in [g, h2] {
                    let (hl, pl) = (h as usize, p as usize);
                    if hl == 0 || hl > MAX_HEADER || pl > MAX_PAYLOAD {
                        prop_assert!(matches!(&r, Err(FrameError::Protocol(m)) if m.contains("out of bounds")), "{:?}", r);
                    } else if hl + pl > tail.len() {
                        // The payload is read before the header is decoded: a frame cut short
                        // anywhere is an early end of stream.
                        let eof = matches!(&r, Err(FrameError::Io(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof);
                        prop_assert!(eof, "{:?}", r);
                    } else {
                        // Random bytes are never a message.
                        prop_assert!(matches!(&r, Err(FrameError::Protocol(m)) if m.starts_with("bad header")), "{:?}", r);
                    }
                }
            }

            /// Every encodable message decodes to itself, whatever its payload.
            #[test]
            fn roundtrip(id in any::<u32>(), path in ".{0,64}", payload in proptest::collection::vec(any::<u8>(), 0..512)) {
                let msg = ToGuest::from(Request::FsRead { path, max_bytes: 5, nofollow: true, offset: 0 });
                let buf = encode(id, &msg, &payload).unwrap();
                let f = read_frame::<ToGuest>(&mut &buf[..]).unwrap().unwrap();
                prop_assert_eq!(f.id, id);
                prop_assert_eq!(f.msg, msg);
                prop_assert_eq!(f.payload, payload);
            }

            /// Requests and host stream frames round-trip, and a request is never taken for a
            /// frame of the other direction.
            #[test]
            fn to_guest_roundtrip(id in any::<u32>(), msg in to_guest(), payload in proptest::collection::vec(any::<u8>(), 0..64)) {
                let buf = encode(id, &msg, &payload).unwrap();
                let f = read_frame::<ToGuest>(&mut &buf[..]).unwrap().unwrap();
                prop_assert_eq!((f.id, &f.msg, &f.payload), (id, &msg, &payload));
                if matches!(msg, ToGuest::Request(_)) {
                    prop_assert!(read_frame::<ToHost>(&mut &buf[..]).is_err());
                }
            }

            /// Replies (every error code among them) and guest stream frames round-trip; a reply
            /// is never taken for a request; only a `Hello` reads as an announcement.
            #[test]
            fn to_host_roundtrip(id in any::<u32>(), msg in to_host(), payload in proptest::collection::vec(any::<u8>(), 0..64)) {
                let buf = encode(id, &msg, &payload).unwrap();
                let f = read_frame::<ToHost>(&mut &buf[..]).unwrap().unwrap();
                prop_assert_eq!((f.id, &f.msg, &f.payload), (id, &msg, &payload));
                if matches!(msg, ToHost::Reply(_)) {
                    prop_assert!(read_frame::<ToGuest>(&mut &buf[..]).is_err());
                }
                let header = serde_json::to_vec(&msg).unwrap();
                match (&msg, announcement(&header)) {
                    (ToHost::Reply(Reply::Hello(h)), Some(a)) => prop_assert_eq!(a.protocol, h.protocol),
                    (ToHost::Reply(Reply::Hello(_)), None) => prop_assert!(false, "a Hello was not recognised"),
                    (_, a) => prop_assert_eq!(a, None),
                }
            }

            /// An error code's wire name survives any message, and decodes to the same code.
            #[test]
            fn error_codes_are_stable(code in code(), message in ".{0,200}") {
                let json = serde_json::to_value(ToHost::from(WireError::new(code, message.clone()))).unwrap();
                prop_assert_eq!(json["code"].as_str(), Some(code.as_str()));
                let back: ToHost = serde_json::from_value(json).unwrap();
                prop_assert_eq!(back, ToHost::Reply(Reply::Error(WireError { code, message })));
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

//! What a supervisor needs to run one VM, written by the launcher as `spec.json` in the VM's
//! runtime directory, and the state the supervisor publishes back (`state.json`).

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VmSpec {
    pub id: String,
    pub qemu: PathBuf,
    pub args: Vec<String>,
    pub accel: String,
    /// Tear everything down (VM dir and `cleanup`) when the owner connection closes.
    pub ephemeral: bool,
    pub boot_timeout_ms: u64,
    /// Files removed with the VM (throwaway overlays).
    pub cleanup: Vec<PathBuf>,
    /// The guest's network, when it has a NIC.
    #[serde(default)]
    pub net: Option<crate::net::NetSpec>,
    /// Saved memory to restore (a stopped workspace's): QEMU starts with `-incoming defer`
    /// and the supervisor feeds it this file; the guest agent is running already, so it is
    /// asked for its `Hello` at once instead of awaited.
    #[serde(default)]
    pub restore: Option<PathBuf>,
    /// Migration's `x-ignore-shared` on save: the guest's RAM is a shared file (a warm template
    /// being built), which holds it, so it stays out of the stream.
    #[serde(default)]
    pub save_ignore_shared: bool,
    /// The same on restore: a warm template's stream, whose RAM comes from its file.
    #[serde(default)]
    pub restore_ignore_shared: bool,
}

/// The line the supervisor prints to the launcher once the guest is up (or failed to boot).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BootReport {
    pub ok: bool,
    pub error: Option<String>,
    pub serial_tail: Option<String>,
    pub boot_ms: u64,
    pub guest_uptime_ms: u64,
    pub supervisor_pid: u32,
    pub qemu_pid: u32,
    /// Ports published on the host (their real host ports when 0 was asked for).
    #[serde(default)]
    pub published: Vec<crate::net::PublishedPort>,
}

/// Published in `state.json` whenever the VM's state changes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VmState {
    pub state: String,
    pub reason: Option<String>,
    pub supervisor_pid: u32,
    pub qemu_pid: u32,
    pub accel: String,
    pub boot_ms: u64,
    /// Set when the guest's network stack failed: the guest then has no network at all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub net_error: Option<String>,
}

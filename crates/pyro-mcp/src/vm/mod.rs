//! The VM layer: start a QEMU microVM under its own supervisor and talk to its guest; warm
//! templates and spares; the host's VM quota. It knows nothing of workspaces, environments'
//! catalog or the SDK: what it needs of them arrives as values (`template::BaseImage`).
//!
//! This file only names the modules and re-exports what callers use most.

pub mod accel;
pub mod boot;
pub mod client;
pub mod disk;
pub mod ids;
pub mod initramfs;
pub mod launch;
pub mod procs;
pub mod qemu;
pub mod qmp;
pub mod quota;
pub mod serial;
pub mod spare;
pub mod spare_use;
pub mod spec;
pub mod supervisor;
pub mod template;

pub use boot::boot_to_init;
pub use client::Client;
pub use disk::{create_overlay, create_overlay_on, qcow2_backing_name, qcow2_size};
pub use ids::{is_id, new_id, random_hex};
pub use launch::{
    abort_ephemeral, boot_timeout_ms, launch, new_vm_dir, probe_boot, Identity, LaunchOptions, Restore, Vm,
};

//! What the `pyro` binaries (the CLI, `pyro-bench`) and this crate's examples need beyond the
//! SDK: the supervisor entry point, finding the pyro binary, raw VM boots for benchmarks.
//! Hidden from the docs and not a stable interface; SDK users should not need any of it.

pub use crate::env::{installed, CatalogEntry, CATALOG};
pub use crate::hidden::spare_preparer_main as prepare_spare;
pub use crate::hidden::template_builder_main as build_template;
pub use crate::kernel::{cached_kernel, ensure_kernel, mirror_from_env, Kernel};
pub use crate::runtime::{mark_self_is_pyro, pyro_binary, set_pyro_binary};
pub use crate::vm::accel::Verdict;
pub use crate::vm::qemu::{which, Accel, Disk, MachineConfig, VmMode};
pub use crate::vm::spare::evict_all as evict_spares;
pub use crate::vm::supervisor::main as supervise;
pub use crate::vm::{abort_ephemeral, boot_to_init, create_overlay, new_vm_dir};
pub use crate::workspace::files::MAX_WRITE_BYTES;
pub use crate::workspace::parse_label;
pub use crate::workspace::patch::MAX_PATCH_BYTES;

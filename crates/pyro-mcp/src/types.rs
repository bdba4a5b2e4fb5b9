//! Every option and result type of the SDK in one place, so that callers can name what
//! [`crate::Pyro`] and [`crate::Workspaces`] take and return (the modules that define them are
//! private).

pub use crate::doctor::{
    Check, DoctorCapabilities, DoctorEnvironment, DoctorKernel, DoctorKvm, DoctorPaths, DoctorReport, DoctorTemplate,
    Finding, KvmVerdict,
};
pub use crate::env::manifest::LayerInfo;
pub use crate::env::{
    EnvKind, EnvironmentDetails, ImageConfig, InstallSummary, Installed, OciInfo, PruneEntry, PruneReport, PullOptions,
    PullReport,
};
pub use crate::net::stack::Denial;
pub use crate::net::{NetworkOptions, NetworkPolicy, PortSpec, PublishedPort};
pub use crate::run::{RunOptions, RunResult};
pub use crate::runtime::Runtime;
pub use crate::sdk::{EnvironmentInfo, EnvironmentList};
pub use crate::session::{Cleanup, ExecOutput, VmSession};
pub use crate::workspace::base::Workspaces;
pub use crate::workspace::diff::{DiffEntry, DiffResult, DiffSummary};
pub use crate::workspace::disk::DiskExport;
pub use crate::workspace::export::{ExportOptions, ExportReport, SkippedEntry};
pub use crate::workspace::files::{
    FileEntry, FileList, FileRead, FileWrite, PatchEntry, PatchReport, PatchSummary, SyncDetails, SyncPush,
};
pub use crate::workspace::lifecycle::{CreateOptions, DeleteReport, ExecOptions, ExecRecord, Logs, UpdateOptions};
pub use crate::workspace::recover::SweepReport;
pub use crate::workspace::secrets::{SecretEnv, SecretInfo, SecretSource, SecretSpec};
pub use crate::workspace::services::{
    ReadinessArgs, RestartPolicy, ServiceInfo, ServiceList, ServiceLogs, ServiceOptions,
};
pub use crate::workspace::shells::{ShellInfo, ShellList, ShellOptions, ShellRead, ShellReadOptions};
pub use crate::workspace::snapshots::{SnapshotDeleted, SnapshotInfo, SnapshotList};
pub use crate::workspace::stop::{StartReport, StopReport};
pub use crate::workspace::summary::ServiceItem;
pub use crate::workspace::summary::{
    CommandItem, CommandsSection, DiffCounts, DiffSection, EditsSection, ExportItem, FailureItem, SecretsSection,
    SnapshotsSection, StopsSection, Summary, SummaryWorkspace,
};
pub use crate::workspace::{WorkspaceInfo, WorkspaceList, WorkspaceSeed};
pub use pyro_proto::Readiness;

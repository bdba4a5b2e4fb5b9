//! The MCP tools, declared once each in [`TOOLS`]: name, title, description, effect (the
//! annotations), the profiles that offer the tool, its argument and result types, the fields
//! its output schema names, and the handler a call runs. The profiles' tool lists,
//! `tools/list`, the dispatch of `tools/call` and the contract-pin check all read this table.
//!
//! A tool whose `workspace-full` form takes more arguments (`workspace_create`: network and
//! secrets; `workspace_exec`: `secret_env`; `workspace_reset`: `snapshot`) says so in its
//! entry (`args: Exec + SecretEnvArg`): `workspace-core` parses the base type and refuses the
//! extra fields, `workspace-full` parses both, and one handler serves the two.

use super::handlers::{self as h, reply, Ctx, Reply};
use super::profile::Profile;
use super::schema;
use super::tools::*;
use crate::error::Result;
use crate::workspace::{disk as dk, files as f, lifecycle as l, services as s, shells as sh, snapshots as sn};
use crate::WorkspaceInfo;
use rmcp::model::{Tool, ToolAnnotations};
use serde_json::{json, Value};
use std::sync::Arc;

/// What a call does to state: the hints hosts act on (`readOnlyHint`, `destructiveHint`,
/// `idempotentHint`). `openWorldHint` is not listed: every tool acts on this host's VMs only,
/// and a fourth hint on every tool did not fit the budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Reads only (destructive and idempotent say nothing then, and are not listed).
    ReadOnly,
    /// Changes state.
    Writes {
        /// It may undo or overwrite what exists (`destructiveHint`).
        destructive: bool,
        /// A repeat with the same arguments changes nothing more (`idempotentHint`).
        idempotent: bool,
    },
}

// The combinations, named as the MCP spec words them ("additive" is not destructive).
const READ: Effect = Effect::ReadOnly;
const ADDITIVE: Effect = Effect::Writes { destructive: false, idempotent: false };
const ADDITIVE_IDEMPOTENT: Effect = Effect::Writes { destructive: false, idempotent: true };
const DESTRUCTIVE: Effect = Effect::Writes { destructive: true, idempotent: false };
const DESTRUCTIVE_IDEMPOTENT: Effect = Effect::Writes { destructive: true, idempotent: true };

impl Effect {
    fn annotations(self) -> ToolAnnotations {
        match self {
            // Hints at their spec defaults (readOnlyHint and idempotentHint false) are left
            // out: bytes in every listing, and no host reads them differently.
            Effect::ReadOnly => ToolAnnotations::new().read_only(true),
            Effect::Writes { destructive, idempotent: false } => ToolAnnotations::new().destructive(destructive),
            Effect::Writes { destructive, idempotent: true } => {
                ToolAnnotations::new().destructive(destructive).idempotent(true)
            }
        }
    }
}

/// The profiles a tool belongs to (each profile extends the one before).
const ALL: &[Profile] = &[Profile::VmRun, Profile::WorkspaceCore, Profile::WorkspaceFull];
const WORKSPACE: &[Profile] = &[Profile::WorkspaceCore, Profile::WorkspaceFull];
const FULL: &[Profile] = &[Profile::WorkspaceFull];

/// One argument type of a tool and the call that parses it and runs the tool's handler.
#[derive(Clone, Copy)]
pub struct Args {
    schema: fn() -> schemars::Schema,
    call: fn(&Ctx, Value) -> Result<Reply>,
    /// The fields serde accepts, and the parse alone, for the tests that compare them with
    /// the listed schema.
    #[cfg(test)]
    fields: fn() -> Vec<&'static str>,
    #[cfg(test)]
    parses: fn(Value) -> Result<()>,
}

/// One MCP tool.
pub struct ToolEntry {
    /// What hosts call it by (`workspace_exec`).
    pub name: &'static str,
    /// For hosts' tool rows (`File read`); not shown to models.
    pub title: &'static str,
    /// What models read: one short sentence.
    pub description: &'static str,
    /// The annotations.
    pub effect: Effect,
    /// The profiles that offer the tool.
    pub profiles: &'static [Profile],
    /// The arguments in `vm-run` and `workspace-core`, and in `workspace-full` unless
    /// `full_args` widens them.
    pub args: Args,
    /// `workspace-full`'s arguments, where that profile offers more fields.
    pub full_args: Option<Args>,
    result: fn() -> schemars::Schema,
    /// The result fields the output schema names (none: no output schema): the ones a model
    /// acts on, as far as the budget allows.
    pub output: &'static [&'static str],
    /// The result can pass Claude Code's 50,000-character default (output streams, file
    /// content, patches, history): declares `anthropic/maxResultSizeChars`.
    pub large_result: bool,
}

/// An [`Args`] that parses `$parse` (whose serde fields are those of `$fields`), converts it
/// into `$into` and runs `$run`, a handler taking `$into` and returning `$result`.
macro_rules! typed {
    ($parse:ty, [$($fields:ty),+], $into:ty => $result:ty, $run:expr) => {
        Args {
            schema: schema::of::<$parse>,
            call: |c, v| {
                let run: fn(&Ctx, $into) -> Result<$result> = $run;
                let a: $parse = c.parse(v)?;
                reply(run(c, a.into())?)
            },
            #[cfg(test)]
            fields: || [$(tests::serde_fields::<$fields>()),+].concat(),
            #[cfg(test)]
            parses: |v| args::<$parse>("test", v).map(drop),
        }
    };
}

/// A tool's `args`, and its `full_args` (`$base + $extra`: `workspace-full` also takes
/// `$extra`'s fields, see [`Wider`]).
macro_rules! args {
    ($base:ident => $result:ty, $run:expr) => {
        typed!($base, [$base], $base => $result, $run)
    };
    ($base:ident + $extra:ident => $result:ty, $run:expr) => {
        typed!($base, [$base], Wider<$base, $extra> => $result, $run)
    };
}
macro_rules! full_args {
    ($base:ident => $result:ty, $run:expr) => {
        None
    };
    ($base:ident + $extra:ident => $result:ty, $run:expr) => {
        Some(typed!(Wider<$base, $extra>, [$base, $extra], Wider<$base, $extra> => $result, $run))
    };
}

/// An optional row field that defaults to `false`.
macro_rules! or_false {
    () => {
        false
    };
    ($v:literal) => {
        $v
    };
}

/// [`TOOLS`], from rows `name { title, description, effect, profiles, [output: [fields],]
/// [large_result: true,] args: Base [+ Extra] => Result, run: handler }`; a handler is a
/// function of `handlers` or, when the call only resolves the workspace and calls the SDK,
/// a closure here.
macro_rules! tools {
    ($($name:ident {
        title: $title:literal, description: $description:literal, effect: $effect:expr, profiles: $profiles:expr,
        $(output: [$($output:ident),+],)? $(large_result: $large:literal,)?
        args: $base:ident $(+ $extra:ident)? => $result:ty, run: $run:expr $(,)?
    })*) => {
        /// Every tool, in `tools/list` order.
        pub static TOOLS: &[ToolEntry] = &[$(ToolEntry {
            name: stringify!($name),
            title: $title,
            description: $description,
            effect: $effect,
            profiles: $profiles,
            args: args!($base $(+ $extra)? => $result, $run),
            full_args: full_args!($base $(+ $extra)? => $result, $run),
            result: schema::of::<$result>,
            output: &[$($(stringify!($output)),+)?],
            large_result: or_false!($($large)?),
        }),*];
    };
}

tools! {
    vm_run { title: "Run in a throwaway VM", description: "Run a command in a throwaway VM.", effect: ADDITIVE,
        profiles: ALL, output: [exit_code, stdout, stderr], large_result: true, args: VmRun => crate::RunResult,
        run: h::vm_run }
    workspace_create { title: "Create", description: "New workspace (seed_path or the project).", effect: ADDITIVE,
        profiles: WORKSPACE, args: Create + CreateExtra => CreateResult, run: h::create }
    workspace_list { title: "List", description: "List workspaces.", effect: READ, profiles: WORKSPACE,
        args: Empty => crate::WorkspaceList, run: h::list }
    workspace_update { title: "Update", description: "Rename or relabel it.", effect: ADDITIVE_IDEMPOTENT,
        profiles: WORKSPACE, args: Update => WorkspaceInfo, run: h::update }
    workspace_status { title: "Status", description: "A workspace's state.", effect: READ, profiles: WORKSPACE,
        args: Id => WorkspaceInfo, run: |c, a| c.workspace(&a.workspace_id, |ws, id| ws.status(id)) }
    workspace_sync_push { title: "Sync push", description: "Copy host files in.", effect: DESTRUCTIVE_IDEMPOTENT,
        profiles: WORKSPACE, args: SyncPush => f::SyncPush, run: h::sync_push }
    workspace_exec { title: "Exec", description: "Run a shell command in it.", effect: DESTRUCTIVE, profiles: WORKSPACE,
        large_result: true, args: Exec + SecretEnvArg => l::ExecRecord, run: h::exec }
    workspace_logs { title: "Logs", description: "Command history.", effect: READ, profiles: WORKSPACE,
        large_result: true, args: Id => l::Logs, run: |c, a| c.workspace(&a.workspace_id, |ws, id| ws.logs(id)) }
    workspace_summary { title: "Summary", description: "Review since the last reset.", effect: READ,
        profiles: WORKSPACE, args: Id => crate::workspace::summary::Summary,
        run: |c, a| c.workspace(&a.workspace_id, |ws, id| ws.summary(id)) }
    workspace_file_list { title: "File list", description: "List files.", effect: READ, profiles: WORKSPACE,
        args: FileList => f::FileList,
        run: |c, a| c.workspace(&a.workspace_id, |ws, id| ws.file_list(id, a.path.as_deref(), a.recursive)) }
    workspace_file_read { title: "File read", description: "Read a file.", effect: READ, profiles: WORKSPACE,
        large_result: true, args: FileRead => f::FileRead, run: h::file_read }
    workspace_file_write { title: "File write", description: "Write a file.", effect: DESTRUCTIVE_IDEMPOTENT,
        profiles: WORKSPACE, args: FileWrite => f::FileWrite,
        run: |c, a| c.workspace(&a.workspace_id, |ws, id| ws.file_write(id, &a.path, a.content.as_bytes())) }
    workspace_patch_apply { title: "Patch apply", description: "Apply a patch, all or nothing.",
        effect: DESTRUCTIVE, profiles: WORKSPACE, args: PatchApply => f::PatchReport,
        run: |c, a| c.workspace(&a.workspace_id, |ws, id| ws.patch_apply(id, &a.patch)) }
    workspace_diff { title: "Diff", description: "The patch since the baseline.", effect: READ, profiles: WORKSPACE,
        large_result: true, args: Diff => crate::workspace::diff::DiffResult,
        run: |c, a| c.workspace(&a.workspace_id, |ws, id| ws.diff_page(id, a.path.as_deref(), DIFF_PATCH_BYTES, a.cursor.unwrap_or(0))) }
    workspace_export { title: "Export", description: "Copy files out to a new host path.", effect: ADDITIVE,
        profiles: WORKSPACE, args: Export => crate::workspace::export::ExportReport, run: h::export }
    workspace_reset { title: "Reset", description: "Discard changes since the baseline.",
        effect: DESTRUCTIVE_IDEMPOTENT, profiles: WORKSPACE, args: Id + SnapshotArg => WorkspaceInfo, run: h::reset }
    workspace_delete { title: "Delete", description: "Delete the workspace.", effect: DESTRUCTIVE_IDEMPOTENT,
        profiles: WORKSPACE, args: Id => l::DeleteReport,
        run: |c, a| c.workspace(&a.workspace_id, |ws, id| ws.delete(id)) }
    shell_open { title: "Shell open", description: "Open a PTY shell.", effect: ADDITIVE, profiles: FULL,
        args: ShellOpen => sh::ShellInfo, run: h::shell_open }
    shell_read { title: "Shell read", description: "Read shell output.", effect: READ, profiles: FULL,
        large_result: true, args: ShellRead => sh::ShellRead, run: h::shell_read }
    shell_write { title: "Shell write", description: "Type into a shell.", effect: DESTRUCTIVE, profiles: FULL,
        args: ShellWrite => sh::ShellInfo,
        run: |c, a| c.workspace(&a.workspace_id, |ws, id| ws.shell_write(id, &a.shell_id, &a.input, !a.no_newline)) }
    shell_signal { title: "Shell signal", description: "Signal a shell's job.", effect: DESTRUCTIVE, profiles: FULL,
        args: ShellSignal => sh::ShellInfo, run: h::shell_signal }
    shell_resize { title: "Shell resize", description: "Resize a shell.", effect: ADDITIVE_IDEMPOTENT, profiles: FULL,
        args: ShellResize => sh::ShellInfo,
        run: |c, a| c.workspace(&a.workspace_id, |ws, id| ws.shell_resize(id, &a.shell_id, a.cols, a.rows)) }
    shell_close { title: "Shell close", description: "Close a shell.", effect: DESTRUCTIVE_IDEMPOTENT, profiles: FULL,
        args: ShellId => sh::ShellInfo,
        run: |c, a| c.workspace(&a.workspace_id, |ws, id| ws.shell_close(id, &a.shell_id)) }
    service_start { title: "Service start", description: "Start a service; wait for ready.", effect: ADDITIVE,
        profiles: FULL, output: [state], args: ServiceStart => s::ServiceInfo, run: h::service_start }
    service_list { title: "Service list", description: "List services.", effect: READ, profiles: FULL,
        args: Id => s::ServiceList, run: |c, a| c.workspace(&a.workspace_id, |ws, id| ws.service_list(id)) }
    service_status { title: "Service status", description: "A service's state.", effect: READ, profiles: FULL,
        args: Named => s::ServiceInfo,
        run: |c, a| c.workspace(&a.workspace_id, |ws, id| ws.service_status(id, &a.name)) }
    service_logs { title: "Service logs", description: "A service's latest output.", effect: READ, profiles: FULL,
        large_result: true, args: ServiceLogs => s::ServiceLogs, run: h::service_logs }
    service_stop { title: "Service stop", description: "Stop a service (TERM, then KILL).",
        effect: DESTRUCTIVE_IDEMPOTENT, profiles: FULL, args: ServiceStop => s::ServiceInfo,
        run: |c, a| c.workspace(&a.workspace_id, |ws, id| ws.service_stop(id, &a.name, a.grace_seconds)) }
    snapshot_create { title: "Snapshot create", description: "Snapshot the whole disk.", effect: ADDITIVE,
        profiles: FULL, args: Named => sn::SnapshotInfo,
        run: |c, a| c.workspace(&a.workspace_id, |ws, id| ws.snapshot_create(id, &a.name)) }
    snapshot_list { title: "Snapshot list", description: "Snapshots, baseline first.", effect: READ, profiles: FULL,
        args: Id => sn::SnapshotList, run: |c, a| c.workspace(&a.workspace_id, |ws, id| ws.snapshot_list(id)) }
    snapshot_delete { title: "Snapshot delete", description: "Delete a snapshot.", effect: DESTRUCTIVE_IDEMPOTENT,
        profiles: FULL, args: Named => sn::SnapshotDeleted,
        run: |c, a| c.workspace(&a.workspace_id, |ws, id| ws.snapshot_delete(id, &a.name)) }
    workspace_stop { title: "Stop", description: "Stop the VM, keeping its memory.", effect: ADDITIVE, profiles: FULL,
        args: Stop => crate::workspace::stop::StopReport,
        run: |c, a| c.workspace(&a.workspace_id, |ws, id| ws.stop(id, a.discard_memory)) }
    workspace_start { title: "Start", description: "Start a stopped workspace.", effect: ADDITIVE, profiles: FULL,
        args: Id => crate::workspace::stop::StartReport,
        run: |c, a| c.workspace(&a.workspace_id, |ws, id| ws.start(id)) }
    workspace_fork { title: "Fork", description: "Copy it, with memory if running.", effect: ADDITIVE, profiles: FULL,
        args: Fork => WorkspaceInfo, run: h::fork }
    workspace_disk_list { title: "Disk list", description: "List a stopped disk.", effect: READ, profiles: FULL,
        args: FileList => f::FileList, run: h::disk_list }
    workspace_disk_read { title: "Disk read", description: "Read from a stopped disk.", effect: READ, profiles: FULL,
        large_result: true, args: FileRead => f::FileRead, run: h::disk_read }
    workspace_disk_export { title: "Disk export", description: "Save a stopped disk as raw ext4.", effect: ADDITIVE,
        profiles: FULL, args: DiskExport => dk::DiskExport, run: h::disk_export }
}

/// Whether `profile`'s `tools/list` carries titles. `workspace-full`'s does not: its 37 tools
/// fit the 12 KiB budget only without them (they cost 748 bytes), and the hosts we know show
/// models none and their users mostly the name.
fn lists_titles(profile: Profile) -> bool {
    profile != Profile::WorkspaceFull
}

impl ToolEntry {
    /// Whether `profile` offers this tool.
    pub fn in_profile(&self, profile: Profile) -> bool {
        self.profiles.contains(&profile)
    }

    /// The arguments this tool takes in `profile`.
    pub(super) fn args_in(&self, profile: Profile) -> &Args {
        match (profile, &self.full_args) {
            (Profile::WorkspaceFull, Some(full)) => full,
            _ => &self.args,
        }
    }

    /// The tool as `profile`'s `tools/list` shows it.
    pub fn listed(&self, profile: Profile) -> Tool {
        let input = schema::reduce((self.args_in(profile).schema)(), true);
        let mut tool = Tool::new(self.name, self.description, input).with_annotations(self.effect.annotations());
        if lists_titles(profile) {
            tool.title = Some(self.title.into());
        }
        if !self.output.is_empty() {
            tool = tool.with_raw_output_schema(Arc::new(schema::output((self.result)(), self.output)));
        }
        if self.large_result {
            let mut meta = rmcp::model::MetaObject::new();
            meta.insert("anthropic/maxResultSizeChars".into(), json!(MAX_RESULT_CHARS));
            tool.meta = Some(meta);
        }
        tool
    }

    /// Run one call in `profile`: parse the arguments, run the handler, render the result.
    pub(super) fn call(&self, ctx: &Ctx, profile: Profile, arguments: Value) -> Result<Reply> {
        (self.args_in(profile).call)(ctx, arguments)
    }
}

/// `profile`'s tools, in `tools/list` order.
pub fn tools(profile: Profile) -> impl Iterator<Item = &'static ToolEntry> {
    TOOLS.iter().filter(move |t| t.in_profile(profile))
}

/// `profile`'s tool called `name`.
pub fn find(profile: Profile, name: &str) -> Option<&'static ToolEntry> {
    tools(profile).find(|t| t.name == name)
}

/// `profile`'s `tools/list`.
pub fn list(profile: Profile) -> Vec<Tool> {
    tools(profile).map(|t| t.listed(profile)).collect()
}

impl Profile {
    /// The profile's tool names, in `tools/list` order.
    pub fn tool_names(self) -> Vec<&'static str> {
        tools(self).map(|t| t.name).collect()
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use serde::de::{self, Deserialize, Visitor};

    /// A deserializer that only records the field names a `Deserialize` struct asks for:
    /// the argument struct's fields as serde sees them, independently of schemars.
    struct FieldNames(&'static [&'static str]);

    impl<'de> de::Deserializer<'de> for &mut FieldNames {
        type Error = de::value::Error;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> std::result::Result<V::Value, Self::Error> {
            Err(de::Error::custom("not a struct"))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> std::result::Result<V::Value, Self::Error> {
            self.0 = fields;
            Err(de::Error::custom("recorded"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option unit
            unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
        }
    }

    /// The fields serde accepts for `T` (a struct without `flatten`).
    pub fn serde_fields<T: for<'de> Deserialize<'de>>() -> Vec<&'static str> {
        let mut probe = FieldNames(&[]);
        let _ = T::deserialize(&mut probe);
        assert!(!probe.0.is_empty() || std::any::type_name::<T>().ends_with("Empty"), "{}", std::any::type_name::<T>());
        probe.0.to_vec()
    }

    fn keys(o: &rmcp::model::JsonObject) -> Vec<String> {
        let mut k: Vec<String> = o["properties"].as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    }

    /// A value of the listed JSON type (within the listed range), to feed the parser.
    fn sample(p: &Value) -> Value {
        match p["type"].as_str() {
            Some("string") => json!("x"),
            Some("integer") => p.get("minimum").cloned().unwrap_or(json!(1)),
            Some("boolean") => json!(true),
            Some("object") => json!({}),
            Some("array") => json!([]),
            t => panic!("unexpected type {t:?} in {p}"),
        }
    }

    /// Each profile's listed schemas against the types: the input properties are the fields
    /// serde accepts, a call giving every listed property (with its listed type) parses, an
    /// unknown field does not, and output properties are fields of the result.
    #[test]
    fn listed_schemas_match_argument_and_result_types() {
        for profile in Profile::ALL {
            for t in tools(profile) {
                let listed = t.listed(profile);
                let args = t.args_in(profile);
                let mut fields: Vec<String> = (args.fields)().iter().map(|s| s.to_string()).collect();
                fields.sort();
                assert_eq!(keys(&listed.input_schema), fields, "{profile} {}: input schema vs argument type", t.name);
                let props = listed.input_schema["properties"].as_object().unwrap();
                let full: serde_json::Map<String, Value> = props.iter().map(|(k, p)| (k.clone(), sample(p))).collect();
                if let Err(e) = (args.parses)(Value::Object(full.clone())) {
                    panic!("{profile} {}: the listed properties do not parse: {}", t.name, e.message);
                }
                let mut bogus = full;
                bogus.insert("bogus".into(), json!(1));
                let e = (args.parses)(Value::Object(bogus)).unwrap_err();
                assert!(e.message.contains("unknown field `bogus`"), "{profile} {}: {}", t.name, e.message);
                if let Some(out) = &listed.output_schema {
                    let all = (t.result)().to_value();
                    let result: Vec<&String> = all["properties"].as_object().unwrap().keys().collect();
                    for k in keys(out) {
                        assert!(result.contains(&&k), "{}: output property {k} is not a field of the result", t.name);
                    }
                    assert!(out.get("required").is_none(), "{}", t.name);
                    assert_eq!(keys(out).len(), t.output.len(), "{}", t.name);
                }
            }
        }
        let run = find(Profile::VmRun, "vm_run").unwrap().listed(Profile::VmRun);
        let p = &run.input_schema["properties"];
        assert_eq!(p["timeout_seconds"], json!({"type": "integer", "minimum": 1, "maximum": 3600, "default": 30}));
        assert_eq!(p["mem_mib"], json!({"type": "integer", "minimum": 256, "maximum": 65536}));
        assert_eq!(p["command"], json!({"type": "string"}));
        assert_eq!(run.input_schema["required"], json!(["command"]));
        let out = run.output_schema.as_ref().unwrap();
        assert_eq!(out["properties"]["stdout"], json!({"type": "string"}));
        assert_eq!(out["properties"]["exit_code"], json!({"type": "integer"}));
    }

    /// The profiles' tool lists are the ones docs/contract.pin pins (the integration tests
    /// check the real server's tools/list against the same lines).
    #[test]
    fn profiles_list_the_pinned_tools() {
        let pin = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/contract.pin")).unwrap();
        for profile in Profile::ALL {
            let line = pin.lines().find_map(|l| l.strip_prefix(&format!("mcp {profile} : "))).unwrap();
            let pinned: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(profile.tool_names(), pinned, "{profile}");
        }
        let mut names: Vec<&str> = TOOLS.iter().map(|t| t.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), TOOLS.len(), "a tool is declared twice");
    }

    /// The `tools/list` budgets, in compact JSON bytes: `workspace-core` (the default) within
    /// 6 KiB, `workspace-full` within 12 KiB. Prints the sizes.
    #[test]
    fn tools_lists_fit_their_budgets() {
        let size = |p: Profile| serde_json::to_vec(&json!({"tools": list(p)})).unwrap().len();
        for p in Profile::ALL {
            println!("{p} tools/list: {} tools, {} bytes", tools(p).count(), size(p));
        }
        assert!(size(Profile::WorkspaceCore) <= TOOLS_LIST_BUDGET, "workspace-core: {}", size(Profile::WorkspaceCore));
        assert!(
            size(Profile::WorkspaceFull) <= FULL_TOOLS_LIST_BUDGET,
            "workspace-full: {}",
            size(Profile::WorkspaceFull)
        );
        for p in Profile::ALL {
            for t in list(p) {
                assert_eq!(t.annotations.as_ref().unwrap().open_world_hint, None, "{}", t.name);
                assert!(t.description.as_ref().unwrap().len() <= 80, "{}", t.name);
                assert_eq!(t.title.is_some(), p != Profile::WorkspaceFull, "{p} {}", t.name);
                assert!(!serde_json::to_string(&t.input_schema).unwrap().contains('$'), "{}", t.name);
            }
        }
    }

    /// Only `workspace-full` offers the wider arguments; the core forms refuse them.
    #[test]
    fn full_profile_widens_create_exec_and_reset() {
        let widened: Vec<&str> = TOOLS.iter().filter(|t| t.full_args.is_some()).map(|t| t.name).collect();
        assert_eq!(widened, ["workspace_create", "workspace_exec", "workspace_reset"]);
        for (tool, extra) in
            [("workspace_create", "secrets"), ("workspace_exec", "secret_env"), ("workspace_reset", "snapshot")]
        {
            let core = find(Profile::WorkspaceCore, tool).unwrap().listed(Profile::WorkspaceCore);
            let full = find(Profile::WorkspaceFull, tool).unwrap().listed(Profile::WorkspaceFull);
            assert!(core.input_schema["properties"].get(extra).is_none(), "{tool}");
            assert!(full.input_schema["properties"].get(extra).is_some(), "{tool}");
            assert_eq!(core.input_schema.get("required"), full.input_schema.get("required"), "{tool}");
        }
        let create = find(Profile::WorkspaceFull, "workspace_create").unwrap().listed(Profile::WorkspaceFull);
        assert_eq!(create.input_schema["properties"]["secrets"]["type"], "array");
        assert_eq!(create.input_schema["properties"]["network_policy"]["type"], "string");
    }
}

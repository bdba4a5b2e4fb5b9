//! Taking and making warm spares (see `spare` for what they are): a create claims a waiting
//! spare and wakes it; after a create, the detached preparer is started to make the next one,
//! which is run once (`warm_up`) before it is paused.

use super::client::Client;
use super::spare::{discard, list, spare_dir, vm_dir, CLAIMED, MAX_SPARES, SPARE};
use super::template::{BaseImage, Shape};
use crate::error::{Context, Error, Result};
use crate::runtime::Runtime;
use std::path::Path;

/// Whether a create of this shape can take a spare, and so whether it should leave one.
pub(crate) fn usable(rt: &Runtime, shape: Shape) -> bool {
    rt.templates && rt.spares && !shape.nic
}

/// Start `pyro __spare` for this environment and shape, detached (it outlives a CLI call),
/// unless a spare for it is there already. Errors are ignored: a spare is an optimisation.
pub(crate) fn refill_in_background(rt: &Runtime, env: &BaseImage, shape: Shape) {
    let have = list(&rt.paths);
    if have.len() >= MAX_SPARES
        || have.iter().any(|(_, i)| {
            i.environment_dir == env.dir.display().to_string() && i.vcpus == shape.vcpus && i.mem_mib == shape.mem_mib
        })
    {
        return;
    }
    // Appended (one line per spare), started afresh past 1 MiB.
    let log_path = rt.paths.cache.join("spare.log");
    let fresh = std::fs::metadata(&log_path).is_ok_and(|m| m.len() > 1 << 20);
    let Ok(log) = std::fs::OpenOptions::new().create(true).append(!fresh).write(true).truncate(fresh).open(&log_path)
    else {
        return;
    };
    let mut cmd = std::process::Command::new(&rt.supervisor_bin);
    // Explicit, so an SDK caller's own paths hold (the child does not see them otherwise).
    cmd.env("PYRO_DATA_DIR", &rt.paths.data)
        .env("PYRO_CACHE_DIR", &rt.paths.cache)
        .env("PYRO_RUNTIME_DIR", &rt.paths.runtime)
        .arg("__spare")
        .arg(&env.name)
        .arg(shape.vcpus.to_string())
        .arg(shape.mem_mib.to_string());
    crate::proc::spawn_detached(cmd, log);
}

/// What a create and its first command run in the guest, once, in the spare's QEMU: the clock,
/// a command in /workspace, a freeze and a thaw (the create's baseline switch).
pub(crate) fn warm_up(client: &mut Client) -> Result<()> {
    let req = pyro_proto::ExecRequest {
        command: pyro_proto::Command::Argv(vec!["true".into()]),
        cwd: Some("/workspace".into()),
        env: vec![],
        timeout_ms: 30_000,
        max_output_bytes: 1024,
        progress_ms: 0,
    };
    // Twice: a process's first command takes paths (first faults, first allocations) that
    // later ones do not, and the workspace's first command is a later one.
    client.exec(req.clone())?;
    client.exec(req)?;
    client.call(&pyro_proto::Request::SetClock { unix_ns: unix_ns() })?;
    client.call(&pyro_proto::Request::Freeze)?;
    client.call(&pyro_proto::Request::Thaw)?;
    Ok(())
}

fn unix_ns() -> u64 {
    crate::clock::now_ns() as u64
}

/// Resume a paused spare's VM and set its clock (it stood still while paused).
fn wake(vdir: &Path) -> Result<super::Vm> {
    let st: super::spec::VmState =
        serde_json::from_slice(&std::fs::read(vdir.join("state.json")).ctx("reading the spare's state")?)
            .map_err(|_| Error::guest("the spare's state is unreadable"))?;
    let mut client = Client::connect(&vdir.join("supervisor.sock"))?;
    super::qmp::Qmp::connect(&vdir.join("qmp.sock"))
        .and_then(|mut q| q.execute("cont", serde_json::json!({})))
        .map_err(|e| Error::guest(format!("resuming the spare: {}", e.message)))?;
    client.call(&pyro_proto::Request::SetClock { unix_ns: unix_ns() })?;
    let boot = super::spec::BootReport {
        ok: true,
        error: None,
        serial_tail: None,
        boot_ms: st.boot_ms,
        guest_uptime_ms: 0,
        supervisor_pid: st.supervisor_pid,
        qemu_pid: st.qemu_pid,
        published: Vec::new(),
    };
    Ok(super::Vm { dir: vdir.to_path_buf(), client, boot })
}

/// Take a spare for a create of `env` in `shape`: its id, its lock (held until the row is
/// written) and a client of its running VM, or None. A spare that cannot be woken is
/// removed and the next one tried.
pub(crate) fn claim(rt: &Runtime, env: &BaseImage, shape: Shape) -> Option<(String, std::fs::File, super::Vm)> {
    let key = super::template::key(rt, env, shape).ok()?;
    let env_dir = env.dir.display().to_string();
    let now = crate::clock::now_s();
    for (id, info) in list(&rt.paths) {
        if info.environment_dir != env_dir
            || info.template_key != key
            || info.vcpus != shape.vcpus
            || info.mem_mib != shape.mem_mib
            || info.expires_at <= now + 5
        {
            continue;
        }
        let dir = spare_dir(&rt.paths, &id);
        let Ok(Some(lock)) = crate::lockfile::try_lock(&dir.join("lock")) else { continue };
        if std::fs::rename(dir.join(SPARE), dir.join(CLAIMED)).is_err() {
            continue; // taken meanwhile
        }
        crate::clock::trace("spare: claimed");
        match wake(&vm_dir(&rt.paths, &id)) {
            Ok(vm) => {
                let _ = std::fs::rename(dir.join("disk.qcow2.spare"), dir.join("disk.qcow2"));
                return Some((id, lock, vm));
            }
            Err(_) => discard(&rt.paths, &id),
        }
    }
    None
}

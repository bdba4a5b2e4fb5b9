"""The synchronous SDK: `Pyro`, `Workspaces`, `Workspace`, `Environments`. Every method is one
call into the native module (`pyro_mcp._native`, the Rust SDK), which runs it with the GIL
released and returns the CLI's `--json` result; this layer names the arguments (the CLI's
flags, as keywords), turns results into the classes of `pyro_mcp.types`, and keeps the
workspace handle. Nothing here parses CLI output or runs the `pyro` command."""

from __future__ import annotations

import json
import os
import shutil
import sysconfig
import threading
from contextvars import ContextVar
from typing import Dict, List, Mapping, Optional, Sequence, Type, TypeVar, Union

from . import _native
from . import types as t
from ._errors import NotFoundError

__all__ = ["Pyro", "Workspaces", "Workspace", "Environments", "Command", "PathLike"]

#: A command: one string runs through `/bin/sh -c`; a list of strings is argv.
Command = Union[str, Sequence[str]]
#: A host path.
PathLike = Union[str, "os.PathLike[str]"]

R = TypeVar("R", bound=t.Result)

# The cancellation token of the call in progress, set by AsyncPyro for the thread it hands a
# call to (contexts follow the call into the thread); None for plain calls (Ctrl-C cancels
# those).
_TOKEN: ContextVar[Optional[_native.CancelToken]] = ContextVar("pyro_cancel", default=None)

_located = threading.Lock()
_pyro_named = False


def _name_pyro_binary() -> None:
    """Tell the native module which `pyro` runs VM supervisors: `$PYRO_BIN` if set, else the
    one this wheel installed into the environment's scripts directory, else `pyro` on PATH
    (the running executable is python, so the Rust side cannot find it by itself)."""
    global _pyro_named
    with _located:
        if _pyro_named or os.environ.get("PYRO_BIN"):
            return
        for cand in (os.path.join(sysconfig.get_path("scripts"), "pyro"), shutil.which("pyro")):
            if cand and os.path.isfile(cand) and os.access(cand, os.X_OK):
                _native.set_pyro_binary(cand)
                break
        _pyro_named = True


def _of(cls: Type[R], raw: str) -> R:
    return cls(json.loads(raw))


def _cancel() -> Optional[_native.CancelToken]:
    return _TOKEN.get()


def _strmap(name: str, m: Optional[Mapping[str, str]]) -> Optional[Dict[str, str]]:
    if m is None:
        return None
    if not isinstance(m, Mapping):
        raise TypeError(f"{name} must be a mapping of str to str, not {type(m).__name__}")
    return dict(m)


def _strlist(name: str, v: Optional[Sequence[str]]) -> Optional[List[str]]:
    if v is None:
        return None
    if isinstance(v, (str, bytes)) or not isinstance(v, Sequence):
        raise TypeError(f"{name} must be a list of str, not {type(v).__name__}")
    return list(v)


class Pyro:
    """pyro for this user: the same data directories as the `pyro` CLI (`$PYRO_DATA_DIR`,
    XDG), so workspaces made here are listed by `pyro workspace list` and the other way round.

    `templates` and `spares` turn warm VM starts on or off (default: on, unless
    `PYRO_TEMPLATES=off` / `PYRO_SPARES=off`); `progress` prints phase lines of long steps
    (an environment's first build, a boot) on stderr; `diff_tracking=False` makes every diff
    and summary hash every file (default: on, unless `PYRO_DIFF_TRACKING=off`). Safe to share
    between threads."""

    def __init__(
        self,
        *,
        templates: Optional[bool] = None,
        spares: Optional[bool] = None,
        progress: bool = True,
        diff_tracking: Optional[bool] = None,
    ) -> None:
        for name, v in (("templates", templates), ("spares", spares), ("diff_tracking", diff_tracking)):
            if v is not None and not isinstance(v, bool):
                raise TypeError(f"{name} must be a bool or None, not {type(v).__name__}")
        if not isinstance(progress, bool):
            raise TypeError(f"progress must be a bool, not {type(progress).__name__}")
        _name_pyro_binary()
        self._n = _native.Native(templates=templates, spares=spares, progress=progress, diff_tracking=diff_tracking)
        #: The user's workspaces.
        self.workspaces = Workspaces(self)
        #: Installed and installable environments.
        self.environments = Environments(self)

    @property
    def data_dir(self) -> str:
        """Where workspaces and their database live."""
        return str(self._n.data_dir)

    def run(
        self,
        environment: str,
        command: Command,
        *,
        timeout_seconds: Optional[int] = None,
        vcpu_count: Optional[int] = None,
        mem_mib: Optional[int] = None,
        env: Optional[Mapping[str, str]] = None,
        max_output_bytes: Optional[int] = None,
        allow_host_compat: bool = False,
        network_policy: Optional[str] = None,
        allow_domains: Optional[Sequence[str]] = None,
    ) -> t.RunResult:
        """Run one command in a fresh VM that is destroyed afterwards (`pyro run`). A command
        past `timeout_seconds` (default 30) is killed: `exit_code` 124, `timed_out` True."""
        return _of(
            t.RunResult,
            self._n.run(
                environment,
                command,
                timeout_seconds=timeout_seconds,
                vcpu_count=vcpu_count,
                mem_mib=mem_mib,
                env=_strmap("env", env),
                max_output_bytes=max_output_bytes,
                allow_host_compat=allow_host_compat,
                network_policy=network_policy,
                allow_domains=_strlist("allow_domains", allow_domains),
                cancel=_cancel(),
            ),
        )

    def doctor(self) -> t.DoctorReport:
        """Whether this host, as this user, can run pyro's guests (`pyro doctor`)."""
        return _of(t.DoctorReport, self._n.doctor(cancel=_cancel()))

    def repair(self) -> t.SweepReport:
        """Settle what killed calls left behind and say what was removed (`pyro doctor --fix`)."""
        return _of(t.SweepReport, self._n.repair(cancel=_cancel()))


class Environments:
    """`pyro env`: the catalog, pulls and builds, what an install holds, cache cleaning."""

    def __init__(self, pyro: Pyro) -> None:
        self._n = pyro._n

    def list(self) -> t.EnvironmentList:
        """The catalog's environments, then the installed OCI images, with their install state."""
        return _of(t.EnvironmentList, self._n.env_list(cancel=_cancel()))

    def pull(self, name: str, *, insecure: bool = False) -> t.PullReport:
        """Install an environment: build a catalog entry, or pull an OCI image
        (`REGISTRY/REPO[:TAG|@DIGEST]`); `insecure` allows a plain-HTTP registry."""
        return _of(t.PullReport, self._n.env_pull(name, insecure=insecure, cancel=_cancel()))

    def inspect(self, name: str) -> t.EnvironmentDetails:
        """Everything known about one environment, without building or pulling anything."""
        return _of(t.EnvironmentDetails, self._n.env_inspect(name, cancel=_cancel()))

    def prune(self, *, dry_run: bool = False) -> t.PruneReport:
        """Remove partial, stale and unknown cache entries (never what a workspace uses)."""
        return _of(t.PruneReport, self._n.env_prune(dry_run=dry_run, cancel=_cancel()))


class Workspaces:
    """The user's workspaces (`pyro workspace create|list`, and `get` for one of them)."""

    def __init__(self, pyro: Pyro) -> None:
        self._pyro = pyro
        self._n = pyro._n

    def create(
        self,
        environment: str = "debian:12",
        *,
        seed_path: Optional[PathLike] = None,
        name: Optional[str] = None,
        labels: Optional[Mapping[str, str]] = None,
        vcpu_count: Optional[int] = None,
        mem_mib: Optional[int] = None,
        network_policy: Optional[str] = None,
        allow_domains: Optional[Sequence[str]] = None,
        publish: Optional[Sequence[str]] = None,
        secrets: Optional[Mapping[str, str]] = None,
        secret_files: Optional[Mapping[str, PathLike]] = None,
    ) -> "Workspace":
        """Create a workspace and start its VM (`pyro workspace create`). `seed_path`: a host
        directory (a git checkout: its tracked and untracked files, not ignored ones) or a
        .tar(.gz) to fill /workspace from. `network_policy`: `off` (default), `egress`,
        `egress+published-ports`. `secrets`: name -> value, kept on the host; an exec gets one
        only through `secret_env`. Use it as a context manager to delete it on exit."""
        files = None if secret_files is None else {k: os.fspath(v) for k, v in dict(secret_files).items()}
        raw = self._n.ws_create(
            environment,
            seed_path=None if seed_path is None else os.fspath(seed_path),
            name=name,
            labels=_strmap("labels", labels),
            vcpu_count=vcpu_count,
            mem_mib=mem_mib,
            network_policy=network_policy,
            allow_domains=_strlist("allow_domains", allow_domains),
            publish=_strlist("publish", publish),
            secrets=_strmap("secrets", secrets),
            secret_files=files,
            cancel=_cancel(),
        )
        return Workspace(self._pyro, _of(t.WorkspaceInfo, raw))

    def get(self, id_or_name: str) -> "Workspace":
        """The workspace with this id or name (`NotFoundError` if there is none)."""
        return Workspace(self._pyro, _of(t.WorkspaceInfo, self._n.ws_status(id_or_name, cancel=_cancel())))

    def list(self) -> t.WorkspaceList:
        """Every workspace of this user, with its state (`pyro workspace list`)."""
        return _of(t.WorkspaceList, self._n.ws_list(cancel=_cancel()))


class Workspace:
    """One workspace: a handle on its id (the workspace itself lives on, with its VM, until
    `delete()`, whatever happens to this process). `info` is what the last call that returned
    it said; `status()` asks again. As a context manager it is deleted on exit."""

    def __init__(self, pyro: Pyro, info: t.WorkspaceInfo) -> None:
        self._pyro = pyro
        self._n = pyro._n
        #: What the workspace was at its last create, status, update, reset or start.
        self.info = info
        #: Its id (stable; names can change).
        self.id: str = info.id

    @property
    def name(self) -> Optional[str]:
        """Its name, as last seen."""
        return self.info.name

    def __repr__(self) -> str:
        return f"Workspace(id={self.id!r}, name={self.name!r}, state={self.info.state!r})"

    def __enter__(self) -> "Workspace":
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.delete()
        except NotFoundError:
            pass

    # -- lifecycle --------------------------------------------------------------------------

    def status(self) -> t.WorkspaceInfo:
        """Its state now (`pyro workspace status`)."""
        self.info = _of(t.WorkspaceInfo, self._n.ws_status(self.id, cancel=_cancel()))
        return self.info

    def update(
        self,
        *,
        name: Optional[str] = None,
        clear_name: bool = False,
        labels: Optional[Mapping[str, str]] = None,
        clear_labels: Optional[Sequence[str]] = None,
    ) -> t.WorkspaceInfo:
        """Rename it or change its labels (`pyro workspace update`)."""
        raw = self._n.ws_update(
            self.id,
            name=name,
            clear_name=clear_name,
            labels=_strmap("labels", labels),
            clear_labels=_strlist("clear_labels", clear_labels),
            cancel=_cancel(),
        )
        self.info = _of(t.WorkspaceInfo, raw)
        return self.info

    def reset(self, *, snapshot: Optional[str] = None) -> t.WorkspaceInfo:
        """Back to its baseline (or a snapshot) on a fresh VM (`pyro workspace reset`)."""
        self.info = _of(t.WorkspaceInfo, self._n.ws_reset(self.id, snapshot=snapshot, cancel=_cancel()))
        return self.info

    def stop(self, *, discard_memory: bool = False) -> t.StopReport:
        """Stop its VM, keeping its disk (and, unless `discard_memory`, its memory)."""
        return _of(t.StopReport, self._n.ws_stop(self.id, discard_memory=discard_memory, cancel=_cancel()))

    def start(self) -> t.StartReport:
        """Start it again after `stop()`."""
        return _of(t.StartReport, self._n.ws_start(self.id, cancel=_cancel()))

    def fork(self, *, name: Optional[str] = None, labels: Optional[Mapping[str, str]] = None) -> "Workspace":
        """A new workspace from this one's disk (and memory, when running), started."""
        raw = self._n.ws_fork(self.id, name=name, labels=_strmap("labels", labels), cancel=_cancel())
        return Workspace(self._pyro, _of(t.WorkspaceInfo, raw))

    def delete(self) -> t.DeleteReport:
        """Stop its VM and remove it and everything it holds."""
        return _of(t.DeleteReport, self._n.ws_delete(self.id, cancel=_cancel()))

    # -- commands ---------------------------------------------------------------------------

    def exec(
        self,
        command: Command,
        *,
        timeout_seconds: Optional[int] = None,
        cwd: Optional[str] = None,
        env: Optional[Mapping[str, str]] = None,
        secret_env: Optional[Sequence[str]] = None,
        max_output_bytes: Optional[int] = None,
    ) -> t.ExecRecord:
        """Run a command in /workspace (or `cwd`) and wait for it (`pyro workspace exec`).
        A non-zero exit is a result, not an error. Past `timeout_seconds` (default 30) its
        process group is killed: `exit_code` 124, `timed_out` True. `secret_env` entries are
        `SECRET[=ENV_NAME]`; output is capped per stream (`max_output_bytes`, head and tail
        kept around a marker)."""
        raw = self._n.ws_exec(
            self.id,
            command,
            timeout_seconds=timeout_seconds,
            cwd=cwd,
            env=_strmap("env", env),
            secret_env=_strlist("secret_env", secret_env),
            max_output_bytes=max_output_bytes,
            cancel=_cancel(),
        )
        return _of(t.ExecRecord, raw)

    def logs(self) -> t.Logs:
        """Its command history since the last reset (`pyro workspace logs`)."""
        return _of(t.Logs, self._n.ws_logs(self.id, cancel=_cancel()))

    # -- files ------------------------------------------------------------------------------

    def file_read(self, path: str, *, offset: int = 0, max_bytes: Optional[int] = None) -> t.FileRead:
        """A file's content from `offset` (`content` as text, `data` as bytes); a file past
        `max_bytes` is cut (`truncated`, and `next_offset` reads on)."""
        raw, data = self._n.ws_file_read(self.id, path, offset=offset, max_bytes=max_bytes, cancel=_cancel())
        r = _of(t.FileRead, raw)
        r.data = data
        return r

    def file_write(self, path: str, content: Union[str, bytes]) -> t.FileWrite:
        """Write a file (text as UTF-8, or bytes), making its parent directories."""
        if not isinstance(content, (str, bytes)):
            raise TypeError(f"content must be str or bytes, not {type(content).__name__}")
        return _of(t.FileWrite, self._n.ws_file_write(self.id, path, content, cancel=_cancel()))

    def file_list(self, path: Optional[str] = None, *, recursive: bool = False) -> t.FileList:
        """The entries of a directory (default /workspace)."""
        return _of(t.FileList, self._n.ws_file_list(self.id, path, recursive=recursive, cancel=_cancel()))

    def sync_push(self, source: PathLike, *, dest: Optional[str] = None) -> t.SyncPush:
        """Copy a host directory or archive into the workspace (`pyro workspace sync push`)."""
        return _of(t.SyncPush, self._n.ws_sync_push(self.id, os.fspath(source), dest=dest, cancel=_cancel()))

    def patch_apply(self, patch: str) -> t.PatchReport:
        """Apply a unified diff (all of it or nothing)."""
        return _of(t.PatchReport, self._n.ws_patch_apply(self.id, patch, cancel=_cancel()))

    def diff(self, path: Optional[str] = None, *, cursor: int = 0) -> t.DiffResult:
        """What changed since the baseline (under `path` if given), with the patch: edits
        first, big added or removed trees as one entry each; past 500 entries, pass the
        result's `next_cursor` as `cursor` for the next page."""
        return _of(t.DiffResult, self._n.ws_diff(self.id, path, cursor, cancel=_cancel()))

    def summary(self) -> t.Summary:
        """The session in one concise review: commands, edits, diff, services, exports."""
        return _of(t.Summary, self._n.ws_summary(self.id, cancel=_cancel()))

    def export(
        self, path: str, *, output: PathLike, max_bytes: Optional[int] = None, include_git_config: bool = False
    ) -> t.ExportReport:
        """Copy `path` out of the workspace to the host path `output` (which must not exist)."""
        raw = self._n.ws_export(
            self.id,
            path,
            os.fspath(output),
            max_bytes=max_bytes,
            include_git_config=include_git_config,
            cancel=_cancel(),
        )
        return _of(t.ExportReport, raw)

    # -- snapshots --------------------------------------------------------------------------

    def snapshot_create(self, name: str) -> t.SnapshotInfo:
        """Save its disk as a named snapshot (`reset(snapshot=NAME)` goes back to it)."""
        return _of(t.SnapshotInfo, self._n.snapshot_create(self.id, name, cancel=_cancel()))

    def snapshot_list(self) -> t.SnapshotList:
        """Its snapshots."""
        return _of(t.SnapshotList, self._n.snapshot_list(self.id, cancel=_cancel()))

    def snapshot_delete(self, name: str) -> t.SnapshotDeleted:
        """Remove a snapshot."""
        return _of(t.SnapshotDeleted, self._n.snapshot_delete(self.id, name, cancel=_cancel()))

    # -- shells -----------------------------------------------------------------------------

    def shell_open(
        self,
        *,
        cwd: Optional[str] = None,
        cols: int = 120,
        rows: int = 30,
        env: Optional[Mapping[str, str]] = None,
        secret_env: Optional[Sequence[str]] = None,
    ) -> t.ShellInfo:
        """Open an interactive shell on a PTY; talk to it with shell_write/shell_read."""
        raw = self._n.shell_open(
            self.id,
            cwd=cwd,
            cols=cols,
            rows=rows,
            env=_strmap("env", env),
            secret_env=_strlist("secret_env", secret_env),
            cancel=_cancel(),
        )
        return _of(t.ShellInfo, raw)

    def shell_read(
        self,
        shell: str,
        *,
        cursor: int = 0,
        max_chars: Optional[int] = None,
        plain: bool = False,
        wait_for_idle_ms: int = 0,
    ) -> t.ShellRead:
        """Output since `cursor` (the next cursor is in the result)."""
        raw = self._n.shell_read(
            self.id,
            shell,
            cursor=cursor,
            max_chars=max_chars,
            plain=plain,
            wait_for_idle_ms=wait_for_idle_ms,
            cancel=_cancel(),
        )
        return _of(t.ShellRead, raw)

    def shell_write(self, shell: str, input: str, *, newline: bool = True) -> t.ShellInfo:
        """Type `input` into the shell (and Enter, unless `newline=False`)."""
        return _of(t.ShellInfo, self._n.shell_write(self.id, shell, input, newline=newline, cancel=_cancel()))

    def shell_signal(self, shell: str, *, signal: str = "INT") -> t.ShellInfo:
        """Send a signal to the shell's foreground process group."""
        return _of(t.ShellInfo, self._n.shell_signal(self.id, shell, signal=signal, cancel=_cancel()))

    def shell_resize(self, shell: str, *, cols: int, rows: int) -> t.ShellInfo:
        """Resize the shell's PTY."""
        return _of(t.ShellInfo, self._n.shell_resize(self.id, shell, cols=cols, rows=rows, cancel=_cancel()))

    def shell_list(self) -> t.ShellList:
        """Its shells."""
        return _of(t.ShellList, self._n.shell_list(self.id, cancel=_cancel()))

    def shell_close(self, shell: str) -> t.ShellInfo:
        """Close a shell (its processes are killed)."""
        return _of(t.ShellInfo, self._n.shell_close(self.id, shell, cancel=_cancel()))

    # -- services ---------------------------------------------------------------------------

    def service_start(
        self,
        name: str,
        command: Command,
        *,
        cwd: Optional[str] = None,
        ready_file: Optional[str] = None,
        ready_tcp: Optional[str] = None,
        ready_http: Optional[str] = None,
        ready_command: Optional[str] = None,
        ready_timeout_seconds: int = 30,
        ready_interval_ms: int = 500,
        restart: str = "no",
        env: Optional[Mapping[str, str]] = None,
        secret_env: Optional[Sequence[str]] = None,
        publish: Optional[Sequence[str]] = None,
    ) -> t.ServiceInfo:
        """Start a long-running process, and wait until it is ready by at most one check
        (`ready_file`, `ready_tcp` HOST:PORT, `ready_http` URL, `ready_command`)."""
        raw = self._n.service_start(
            self.id,
            name,
            command,
            cwd=cwd,
            ready_file=ready_file,
            ready_tcp=ready_tcp,
            ready_http=ready_http,
            ready_command=ready_command,
            ready_timeout_seconds=ready_timeout_seconds,
            ready_interval_ms=ready_interval_ms,
            restart=restart,
            env=_strmap("env", env),
            secret_env=_strlist("secret_env", secret_env),
            publish=_strlist("publish", publish),
            cancel=_cancel(),
        )
        return _of(t.ServiceInfo, raw)

    def service_list(self) -> t.ServiceList:
        """Its services."""
        return _of(t.ServiceList, self._n.service_list(self.id, cancel=_cancel()))

    def service_status(self, name: str) -> t.ServiceInfo:
        """One service's state."""
        return _of(t.ServiceInfo, self._n.service_status(self.id, name, cancel=_cancel()))

    def service_logs(self, name: str, *, tail_lines: int = 200, all: bool = False) -> t.ServiceLogs:
        """A service's recent output (`all` for everything kept)."""
        return _of(t.ServiceLogs, self._n.service_logs(self.id, name, tail_lines=tail_lines, all=all, cancel=_cancel()))

    def service_stop(self, name: str, *, grace_seconds: int = 5) -> t.ServiceInfo:
        """Stop a service (TERM, then KILL after `grace_seconds`)."""
        return _of(t.ServiceInfo, self._n.service_stop(self.id, name, grace_seconds=grace_seconds, cancel=_cancel()))


"""pyro as an Inspect AI sandbox: `sandbox="pyro"` or `sandbox=("pyro", PyroSandboxConfig(...))`
gives each sample its own workspace (a microVM), deleted when the sample ends.

Inspect finds this module through the `inspect_ai` entry-point group of the `pyro-mcp`
distribution; it is imported only by Inspect (it needs `inspect_ai` installed).

What maps to what:

- `exec(cmd, input, cwd, env, user, timeout)` runs argv in the workspace, from `cwd`
  (relative paths are under /workspace; absolute ones anywhere in the guest), as `user`
  (root by default; another user through `/usr/sbin/runuser`, `SandboxUserUnsupportedError`
  when the guest has no such user). `input` is fed on stdin. Past `timeout` it raises
  `TimeoutError` (the command's process group is killed in the guest first).
- `write_file` / `read_file` use pyro's file calls under /workspace (no shell, any bytes) and
  a base64 pipe elsewhere; parents are created; a missing file is `FileNotFoundError`.
- `sample_init` creates the workspace (the config's environment, vCPUs, memory, network
  policy, allowed domains, seed path), labelled `inspect=pyro`; `sample_cleanup` deletes it;
  `task_cleanup` deletes what a task's samples left; `inspect sandbox cleanup pyro [ID]`
  deletes every workspace labelled `inspect=pyro` (or the one named).
- `default_concurrency` is what the host holds: memory available over the VM size, and at
  most twice the CPUs.
"""

from __future__ import annotations

import base64
import os
import posixpath
import shlex
from typing import Any, Dict, List, Literal, Optional, Set, Union, overload

from inspect_ai.util import ExecResult, SandboxEnvironment, SandboxEnvironmentConfigType, sandboxenv
from inspect_ai.util._sandbox.environment import SandboxUserUnsupportedError
from pydantic import BaseModel

from . import AsyncPyro, AsyncWorkspace, NotFoundError, PyroError

__all__ = ["PyroSandboxConfig", "PyroSandboxEnvironment"]

WORKSPACE = "/workspace"
# The longest timeout pyro takes (24 h): Inspect's `timeout=None` means no limit.
NO_TIMEOUT_S = 24 * 3600
# Per stream, as Inspect's own limit (10 MiB) within pyro's (16 MiB).
MAX_OUTPUT = 10 * 1024 * 1024
# Up to this much stdin travels in an environment variable; more goes through a file.
INLINE_INPUT = 64 * 1024
# A read of a file under /workspace, per call.
READ_CHUNK = 1024 * 1024  # the most one file read returns
LABEL = "inspect"


class PyroSandboxConfig(BaseModel):
    """The workspace each sample gets."""

    environment: str = "debian:12"
    vcpu_count: Optional[int] = None
    mem_mib: Optional[int] = None
    network_policy: Optional[str] = None
    allow_domains: List[str] = []
    seed_path: Optional[str] = None


def _config(config: SandboxEnvironmentConfigType | None) -> PyroSandboxConfig:
    if config is None:
        return PyroSandboxConfig()
    if isinstance(config, PyroSandboxConfig):
        return config
    if isinstance(config, BaseModel):
        return PyroSandboxConfig(**config.model_dump())
    if isinstance(config, str):
        raise ValueError(
            f"the pyro sandbox takes a PyroSandboxConfig, not a file path ({config!r}): "
            'use sandbox=("pyro", PyroSandboxConfig(...))'
        )
    raise TypeError(f"the pyro sandbox's config must be a PyroSandboxConfig, not {type(config).__name__}")


_pyro: Optional[AsyncPyro] = None
# Workspaces made by this process's tasks and not deleted yet, by task name.
_made: Dict[str, Set[str]] = {}


def _client() -> AsyncPyro:
    global _pyro
    if _pyro is None:
        _pyro = AsyncPyro(progress=True)
    return _pyro


def _guest_path(file: str) -> str:
    return file if file.startswith("/") else posixpath.join(WORKSPACE, file)


def _in_workspace(path: str) -> bool:
    norm = posixpath.normpath(path)
    return norm == WORKSPACE or norm.startswith(WORKSPACE + "/")


@sandboxenv(name="pyro")
class PyroSandboxEnvironment(SandboxEnvironment):
    """One sample's workspace."""

    def __init__(self, ws: AsyncWorkspace, task_name: str) -> None:
        super().__init__()
        self.ws = ws
        self.task_name = task_name

    @classmethod
    def config_deserialize(cls, config: Dict[str, Any]) -> BaseModel:
        return PyroSandboxConfig(**config)

    @classmethod
    def default_concurrency(cls) -> Optional[int]:
        mem = PyroSandboxConfig().mem_mib or 1024
        avail = None
        try:
            with open("/proc/meminfo") as f:
                for line in f:
                    if line.startswith("MemAvailable:"):
                        avail = int(line.split()[1]) // 1024
        except OSError:
            pass
        by_cpu = 2 * (os.cpu_count() or 1)
        by_mem = max(1, (avail or mem) // (mem + 256))
        return max(1, min(by_cpu, by_mem))

    @classmethod
    async def task_init(cls, task_name: str, config: SandboxEnvironmentConfigType | None) -> None:
        # Build or pull the environment once, before samples race to do it.
        c = _config(config)
        await _client().environments.pull(c.environment)

    @classmethod
    async def sample_init(
        cls, task_name: str, config: SandboxEnvironmentConfigType | None, metadata: Dict[str, str]
    ) -> Dict[str, SandboxEnvironment]:
        c = _config(config)
        ws = await _client().workspaces.create(
            c.environment,
            seed_path=c.seed_path,
            vcpu_count=c.vcpu_count,
            mem_mib=c.mem_mib,
            network_policy=c.network_policy,
            allow_domains=c.allow_domains or None,
            labels={LABEL: "pyro", "inspect.task": _label_value(task_name)},
        )
        _made.setdefault(task_name, set()).add(ws.id)
        return {"default": cls(ws, task_name)}

    @classmethod
    async def sample_cleanup(
        cls,
        task_name: str,
        config: SandboxEnvironmentConfigType | None,
        environments: Dict[str, SandboxEnvironment],
        interrupted: bool,
    ) -> None:
        for env in environments.values():
            if isinstance(env, PyroSandboxEnvironment):
                await _delete(env.ws.id)
                _made.get(task_name, set()).discard(env.ws.id)

    @classmethod
    async def task_cleanup(cls, task_name: str, config: SandboxEnvironmentConfigType | None, cleanup: bool) -> None:
        if cleanup:
            for wid in sorted(_made.pop(task_name, set())):
                await _delete(wid)

    @classmethod
    async def cli_cleanup(cls, id: Optional[str]) -> None:
        pyro = _client()
        if id:
            await _delete(id)
            return
        listing = await pyro.workspaces.list()
        for w in listing.workspaces:
            if w.labels.get(LABEL) == "pyro":
                await _delete(w.id)

    async def exec(
        self,
        cmd: List[str],
        input: Union[str, bytes, None] = None,
        cwd: Optional[str] = None,
        env: Optional[Dict[str, str]] = None,
        user: Optional[str] = None,
        timeout: Optional[int] = None,
        timeout_retry: bool = True,
        concurrency: bool = True,
    ) -> ExecResult[str]:
        if not cmd:
            raise ValueError("exec needs a command")
        env = dict(env or {})
        script = 'cd "$1" || exit 126; shift; '
        staged: Optional[str] = None
        if input is not None:
            data = input.encode() if isinstance(input, str) else input
            if len(data) <= INLINE_INPUT:
                env["PYRO_INSPECT_STDIN"] = base64.b64encode(data).decode()
                script += 'printf %s "$PYRO_INSPECT_STDIN" | /usr/bin/base64 -d | '
            else:
                staged = f"{WORKSPACE}/.pyro-inspect-stdin-{os.urandom(6).hex()}"
                await self.ws.file_write(staged, data)
                script += f"/usr/bin/cat {shlex.quote(staged)} | "
        if user is not None and user != "root":
            check = await self.ws.exec(["/usr/bin/id", "-u", user], timeout_seconds=30)
            if check.exit_code != 0:
                raise SandboxUserUnsupportedError(f"the guest has no user {user!r}")
            script += f"exec /usr/sbin/runuser -u {shlex.quote(user)} -- \"$@\""
        else:
            script += 'exec "$@"'
        argv = ["/bin/sh", "-c", script, "sh", _guest_path(cwd or WORKSPACE), *cmd]
        try:
            r = await self.ws.exec(
                argv,
                timeout_seconds=NO_TIMEOUT_S if timeout is None else max(1, int(timeout)),
                env=env,
                max_output_bytes=MAX_OUTPUT,
            )
        finally:
            if staged:
                await self.ws.exec(["/usr/bin/rm", "-f", staged], timeout_seconds=30)
        if r.timed_out:
            raise TimeoutError(f"command timed out after {timeout} s: {shlex.join(cmd)[:200]}")
        return ExecResult(success=r.exit_code == 0, returncode=r.exit_code, stdout=r.stdout, stderr=r.stderr)

    async def write_file(self, file: str, contents: Union[str, bytes]) -> None:
        path = _guest_path(file)
        data = contents.encode() if isinstance(contents, str) else contents
        if _in_workspace(path):
            try:
                await self.ws.file_write(path, data)
                return
            except PyroError as e:
                raise _os_error(e, file) from None
        staged = f"{WORKSPACE}/.pyro-inspect-write-{os.urandom(6).hex()}"
        await self.ws.file_write(staged, data)
        q, s = shlex.quote(path), shlex.quote(staged)
        r = await self.ws.exec(
            ["/bin/sh", "-c", f"/usr/bin/mkdir -p -- \"$(/usr/bin/dirname -- {q})\" && /usr/bin/cat {s} > {q}; rc=$?; /usr/bin/rm -f {s}; exit $rc"],
            timeout_seconds=300,
        )
        if r.exit_code != 0:
            raise _exec_error(r.stderr, file)

    @overload
    async def read_file(self, file: str, text: Literal[True] = True) -> str: ...

    @overload
    async def read_file(self, file: str, text: Literal[False]) -> bytes: ...

    async def read_file(self, file: str, text: bool = True) -> Union[str, bytes]:
        path = _guest_path(file)
        if _in_workspace(path):
            chunks: List[bytes] = []
            offset = 0
            while True:
                try:
                    r = await self.ws.file_read(path, offset=offset, max_bytes=READ_CHUNK)
                except PyroError as e:
                    raise _os_error(e, file) from None
                chunks.append(r.data)
                if not r.truncated or r.next_offset is None:
                    break
                offset = r.next_offset
            data = b"".join(chunks)
        else:
            r2 = await self.ws.exec(["/usr/bin/base64", "-w0", "--", path], timeout_seconds=300, max_output_bytes=16 << 20)
            if r2.exit_code != 0:
                raise _exec_error(r2.stderr, file)
            data = base64.b64decode(r2.stdout)
        return data.decode("utf-8") if text else data


def _label_value(s: str) -> str:
    keep = "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in s)
    return keep[:63] or "task"


async def _delete(wid: str) -> None:
    """Delete a workspace if it is still there."""
    try:
        ws = await _client().workspaces.get(wid)
        await ws.delete()
    except NotFoundError:
        pass


def _os_error(e: PyroError, file: str) -> Exception:
    if e.code == "not_found":
        return FileNotFoundError(2, e.message, file)
    if "directory" in e.message.lower():
        return IsADirectoryError(21, e.message, file)
    if e.code == "timeout":
        return TimeoutError(e.message)
    return e


def _exec_error(stderr: str, file: str) -> Exception:
    if "No such file" in stderr:
        return FileNotFoundError(2, stderr.strip(), file)
    if "Is a directory" in stderr:
        return IsADirectoryError(21, stderr.strip(), file)
    if "Permission denied" in stderr:
        return PermissionError(13, stderr.strip(), file)
    return OSError(stderr.strip() or f"cannot access {file}")

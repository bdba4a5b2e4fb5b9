"""The asyncio flavour: `AsyncPyro` and its workspaces, whose methods are awaitables that run
the synchronous call on a thread of their own (the native call releases the GIL), so the
event loop goes on and concurrent calls do not wait for each other. Cancelling the awaiting
task cancels the call: a running guest command is killed, as Ctrl-C does for a plain call.

Each method takes the keyword arguments of the synchronous method of the same name."""

from __future__ import annotations

import asyncio
import contextvars
import functools
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Optional, TypeVar

from . import _native
from . import types as t
from ._errors import NotFoundError
from ._sdk import _TOKEN, Command, Pyro, Workspace

__all__ = ["AsyncPyro", "AsyncWorkspace", "AsyncWorkspaces", "AsyncEnvironments"]

T = TypeVar("T")

# Calls block a thread each while the guest works: enough threads that a harness's samples
# do not queue behind each other (the host's VM capacity bounds it well before this).
_MAX_THREADS = 64


class _Runner:
    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=_MAX_THREADS, thread_name_prefix="pyro-async")

    async def __call__(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        token = _native.CancelToken()
        ctx = contextvars.copy_context()
        ctx.run(_TOKEN.set, token)
        loop = asyncio.get_running_loop()
        fut = loop.run_in_executor(self._pool, functools.partial(ctx.run, fn, *args, **kwargs))
        try:
            return await asyncio.shield(fut)
        except asyncio.CancelledError:
            token.cancel()
            # The call stops at its next safe point; wait for it so nothing runs on after the
            # task is gone.
            try:
                await fut
            except BaseException:
                pass
            raise


class AsyncPyro:
    """`Pyro` for asyncio code: the same arguments, awaitable methods."""

    def __init__(
        self,
        *,
        templates: Optional[bool] = None,
        spares: Optional[bool] = None,
        progress: bool = True,
        diff_tracking: Optional[bool] = None,
    ) -> None:
        #: The synchronous SDK underneath.
        self.sync = Pyro(templates=templates, spares=spares, progress=progress, diff_tracking=diff_tracking)
        self._run = _Runner()
        #: The user's workspaces.
        self.workspaces = AsyncWorkspaces(self)
        #: Installed and installable environments.
        self.environments = AsyncEnvironments(self)

    async def run(self, environment: str, command: Command, **options: Any) -> t.RunResult:
        """`Pyro.run`."""
        return await self._run(self.sync.run, environment, command, **options)

    async def doctor(self) -> t.DoctorReport:
        """`Pyro.doctor`."""
        return await self._run(self.sync.doctor)

    async def repair(self) -> t.SweepReport:
        """`Pyro.repair`."""
        return await self._run(self.sync.repair)


class AsyncEnvironments:
    """`Environments`, awaitable."""

    def __init__(self, pyro: AsyncPyro) -> None:
        self._run, self._sync = pyro._run, pyro.sync.environments

    async def list(self) -> t.EnvironmentList:
        """`Environments.list`."""
        return await self._run(self._sync.list)

    async def pull(self, name: str, **options: Any) -> t.PullReport:
        """`Environments.pull`."""
        return await self._run(self._sync.pull, name, **options)

    async def inspect(self, name: str) -> t.EnvironmentDetails:
        """`Environments.inspect`."""
        return await self._run(self._sync.inspect, name)

    async def prune(self, **options: Any) -> t.PruneReport:
        """`Environments.prune`."""
        return await self._run(self._sync.prune, **options)


class AsyncWorkspaces:
    """`Workspaces`, awaitable."""

    def __init__(self, pyro: AsyncPyro) -> None:
        self._pyro = pyro
        self._sync = pyro.sync.workspaces

    async def create(self, environment: str = "debian:12", **options: Any) -> "AsyncWorkspace":
        """`Workspaces.create`; `async with await pyro.workspaces.create(...) as ws` deletes it
        on exit."""
        return AsyncWorkspace(self._pyro, await self._pyro._run(self._sync.create, environment, **options))

    async def get(self, id_or_name: str) -> "AsyncWorkspace":
        """`Workspaces.get`."""
        return AsyncWorkspace(self._pyro, await self._pyro._run(self._sync.get, id_or_name))

    async def list(self) -> t.WorkspaceList:
        """`Workspaces.list`."""
        return await self._pyro._run(self._sync.list)


class AsyncWorkspace:
    """`Workspace`, awaitable: each method takes the synchronous method's arguments."""

    def __init__(self, pyro: AsyncPyro, ws: Workspace) -> None:
        self._pyro = pyro
        self._run = pyro._run
        #: The synchronous handle (for anything not wrapped here).
        self.sync = ws
        #: Its id.
        self.id: str = ws.id

    @property
    def info(self) -> t.WorkspaceInfo:
        """What the workspace was at its last create, status, update, reset or start."""
        return self.sync.info

    def __repr__(self) -> str:
        return f"Async{self.sync!r}"

    async def __aenter__(self) -> "AsyncWorkspace":
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            await self.delete()
        except NotFoundError:
            pass

    async def status(self) -> t.WorkspaceInfo:
        """`Workspace.status`."""
        return await self._run(self.sync.status)

    async def exec(self, command: Command, **options: Any) -> t.ExecRecord:
        """`Workspace.exec`."""
        return await self._run(self.sync.exec, command, **options)

    async def logs(self) -> t.Logs:
        """`Workspace.logs`."""
        return await self._run(self.sync.logs)

    async def file_read(self, path: str, **options: Any) -> t.FileRead:
        """`Workspace.file_read`."""
        return await self._run(self.sync.file_read, path, **options)

    async def file_write(self, path: str, content: Any) -> t.FileWrite:
        """`Workspace.file_write`."""
        return await self._run(self.sync.file_write, path, content)

    async def file_list(self, path: Optional[str] = None, **options: Any) -> t.FileList:
        """`Workspace.file_list`."""
        return await self._run(self.sync.file_list, path, **options)

    async def patch_apply(self, patch: str) -> t.PatchReport:
        """`Workspace.patch_apply`."""
        return await self._run(self.sync.patch_apply, patch)

    async def diff(self, path: Optional[str] = None, *, cursor: int = 0) -> t.DiffResult:
        """`Workspace.diff`."""
        return await self._run(self.sync.diff, path, cursor=cursor)

    async def summary(self) -> t.Summary:
        """`Workspace.summary`."""
        return await self._run(self.sync.summary)

    async def export(self, path: str, **options: Any) -> t.ExportReport:
        """`Workspace.export`."""
        return await self._run(self.sync.export, path, **options)

    async def reset(self, **options: Any) -> t.WorkspaceInfo:
        """`Workspace.reset`."""
        return await self._run(self.sync.reset, **options)

    async def snapshot_create(self, name: str) -> t.SnapshotInfo:
        """`Workspace.snapshot_create`."""
        return await self._run(self.sync.snapshot_create, name)

    async def stop(self, **options: Any) -> t.StopReport:
        """`Workspace.stop`."""
        return await self._run(self.sync.stop, **options)

    async def start(self) -> t.StartReport:
        """`Workspace.start`."""
        return await self._run(self.sync.start)

    async def fork(self, **options: Any) -> "AsyncWorkspace":
        """`Workspace.fork`."""
        return AsyncWorkspace(self._pyro, await self._run(self.sync.fork, **options))

    async def delete(self) -> t.DeleteReport:
        """`Workspace.delete`."""
        return await self._run(self.sync.delete)


"""pyro-mcp for Python: disposable microVM workspaces for coding agents, on your own Linux
host. The Rust SDK compiled into this package (`pyro_mcp._native`), with the same data as the
`pyro` CLI this wheel installs.

    from pyro_mcp import Pyro
    pyro = Pyro()
    print(pyro.run("debian:12", "echo hi").stdout)
    with pyro.workspaces.create("debian:12", seed_path=".") as ws:
        r = ws.exec("make test", timeout_seconds=600)
        print(r.exit_code, ws.diff().summary)

`AsyncPyro` is the asyncio flavour; `pyro_mcp.inspect` is an Inspect AI sandbox (`pyro`).
Errors raise `PyroError` subclasses (`.code`, `.message`, `.hint`). See docs/python.md."""

from . import types
from ._aio import AsyncEnvironments, AsyncPyro, AsyncWorkspace, AsyncWorkspaces
from ._errors import (
    CancelledError,
    ConflictError,
    GuestUnavailableError,
    InternalError,
    InvalidArgumentError,
    LimitExceededError,
    NotFoundError,
    PyroError,
    PyroTimeoutError,
    StateError,
)
from ._native import VERSION as __version__
from ._native import CancelToken
from ._sdk import Command, Environments, PathLike, Pyro, Workspace, Workspaces

__all__ = [
    "Pyro",
    "Workspaces",
    "Workspace",
    "Environments",
    "AsyncPyro",
    "AsyncWorkspaces",
    "AsyncWorkspace",
    "AsyncEnvironments",
    "CancelToken",
    "Command",
    "PathLike",
    "types",
    "PyroError",
    "NotFoundError",
    "InvalidArgumentError",
    "ConflictError",
    "StateError",
    "GuestUnavailableError",
    "PyroTimeoutError",
    "LimitExceededError",
    "InternalError",
    "CancelledError",
    "__version__",
]

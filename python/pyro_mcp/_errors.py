"""pyro's errors as Python exceptions: `PyroError` with `.code`, `.message` and `.hint`, and
one subclass per error code (the codes of the CLI's `--json` errors and of MCP tool errors)."""

from typing import Dict, Optional, Type

__all__ = [
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
    "error_for",
]


class PyroError(Exception):
    """A pyro operation failed. `code` is its class (`not_found`, `invalid_argument`, ...),
    `message` what went wrong on one line, `hint` what to do about it (or None)."""

    code: str = "internal"

    def __init__(self, message: str, hint: Optional[str] = None, code: Optional[str] = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return f"{self.message} (hint: {self.hint})" if self.hint else self.message


class NotFoundError(PyroError):
    """What the call names does not exist (a workspace, a file, a shell, a service)."""

    code = "not_found"


class InvalidArgumentError(PyroError, ValueError):
    """The call is refused as asked (a path outside /workspace, a bad name, a value out of range)."""

    code = "invalid_argument"


class ConflictError(PyroError):
    """It clashes with what exists (a name taken, a running service of that name)."""

    code = "conflict"


class StateError(PyroError):
    """Not possible in the current state (a shell that has exited, a stopping workspace)."""

    code = "state"


class GuestUnavailableError(PyroError):
    """The VM or its agent cannot answer (stopped, gone, did not boot)."""

    code = "guest_unavailable"


class PyroTimeoutError(PyroError, TimeoutError):
    """Something did not happen in time (a guest that stopped answering). A command that runs
    past its own `timeout_seconds` is not an error: its record says `timed_out`."""

    code = "timeout"


class LimitExceededError(PyroError):
    """A cap or a resource ran out (output or file size, shells, services, guest memory)."""

    code = "limit_exceeded"


class InternalError(PyroError):
    """Anything else that failed; the message says what."""

    code = "internal"


class CancelledError(PyroError):
    """The call was cancelled (Ctrl-C, an asyncio task cancelled, a CancelToken set); nothing
    half-made was left behind."""

    code = "cancelled"


_BY_CODE: Dict[str, Type[PyroError]] = {
    c.code: c
    for c in (
        NotFoundError,
        InvalidArgumentError,
        ConflictError,
        StateError,
        GuestUnavailableError,
        PyroTimeoutError,
        LimitExceededError,
        InternalError,
        CancelledError,
    )
}


def error_for(code: str, message: str, hint: Optional[str] = None) -> PyroError:
    """The exception for an error of `code` (the native module raises what this returns)."""
    cls = _BY_CODE.get(code, PyroError)
    return cls(message, hint, code)

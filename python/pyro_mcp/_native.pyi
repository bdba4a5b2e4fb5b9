"""Stubs of the native module (crates/pyro-py): each method returns the CLI's --json text."""

from os import PathLike
from typing import Dict, List, Optional, Sequence, Tuple, Union

VERSION: str

_Path = Union[str, "PathLike[str]"]
_Cmd = Union[str, Sequence[str]]

def schemas() -> str: ...
def set_pyro_binary(path: _Path) -> None: ...

class CancelToken:
    def __init__(self) -> None: ...
    def cancel(self) -> None: ...
    @property
    def cancelled(self) -> bool: ...

_Tok = Optional[CancelToken]

class Native:
    def __init__(
        self,
        *,
        templates: Optional[bool] = None,
        spares: Optional[bool] = None,
        progress: bool = True,
        diff_tracking: Optional[bool] = None,
    ) -> None: ...
    @property
    def data_dir(self) -> str: ...
    def run(
        self,
        environment: str,
        command: _Cmd,
        *,
        timeout_seconds: Optional[int] = None,
        vcpu_count: Optional[int] = None,
        mem_mib: Optional[int] = None,
        env: Optional[Dict[str, str]] = None,
        max_output_bytes: Optional[int] = None,
        allow_host_compat: bool = False,
        network_policy: Optional[str] = None,
        allow_domains: Optional[List[str]] = None,
        cancel: _Tok = None,
    ) -> str: ...
    def doctor(self, cancel: _Tok = None) -> str: ...
    def repair(self, cancel: _Tok = None) -> str: ...
    def env_list(self, cancel: _Tok = None) -> str: ...
    def env_pull(self, name: str, *, insecure: bool = False, cancel: _Tok = None) -> str: ...
    def env_inspect(self, name: str, *, cancel: _Tok = None) -> str: ...
    def env_prune(self, *, dry_run: bool = False, cancel: _Tok = None) -> str: ...
    def ws_create(
        self,
        environment: str,
        *,
        seed_path: Optional[str] = None,
        name: Optional[str] = None,
        labels: Optional[Dict[str, str]] = None,
        vcpu_count: Optional[int] = None,
        mem_mib: Optional[int] = None,
        network_policy: Optional[str] = None,
        allow_domains: Optional[List[str]] = None,
        publish: Optional[List[str]] = None,
        secrets: Optional[Dict[str, str]] = None,
        secret_files: Optional[Dict[str, str]] = None,
        cancel: _Tok = None,
    ) -> str: ...
    def ws_list(self, *, cancel: _Tok = None) -> str: ...
    def ws_status(self, id: str, *, cancel: _Tok = None) -> str: ...
    def ws_update(
        self,
        id: str,
        *,
        name: Optional[str] = None,
        clear_name: bool = False,
        labels: Optional[Dict[str, str]] = None,
        clear_labels: Optional[List[str]] = None,
        cancel: _Tok = None,
    ) -> str: ...
    def ws_exec(
        self,
        id: str,
        command: _Cmd,
        *,
        timeout_seconds: Optional[int] = None,
        cwd: Optional[str] = None,
        env: Optional[Dict[str, str]] = None,
        secret_env: Optional[List[str]] = None,
        max_output_bytes: Optional[int] = None,
        cancel: _Tok = None,
    ) -> str: ...
    def ws_logs(self, id: str, *, cancel: _Tok = None) -> str: ...
    def ws_file_list(self, id: str, path: Optional[str] = None, *, recursive: bool = False, cancel: _Tok = None) -> str: ...
    def ws_file_read(
        self, id: str, path: str, *, offset: int = 0, max_bytes: Optional[int] = None, cancel: _Tok = None
    ) -> Tuple[str, bytes]: ...
    def ws_file_write(self, id: str, path: str, content: Union[str, bytes], *, cancel: _Tok = None) -> str: ...
    def ws_sync_push(self, id: str, source: str, *, dest: Optional[str] = None, cancel: _Tok = None) -> str: ...
    def ws_patch_apply(self, id: str, patch: str, *, cancel: _Tok = None) -> str: ...
    def ws_diff(self, id: str, path: Optional[str] = None, cursor: int = 0, *, cancel: _Tok = None) -> str: ...
    def ws_summary(self, id: str, *, cancel: _Tok = None) -> str: ...
    def ws_export(
        self,
        id: str,
        path: str,
        output: str,
        *,
        max_bytes: Optional[int] = None,
        include_git_config: bool = False,
        cancel: _Tok = None,
    ) -> str: ...
    def ws_reset(self, id: str, *, snapshot: Optional[str] = None, cancel: _Tok = None) -> str: ...
    def ws_delete(self, id: str, *, cancel: _Tok = None) -> str: ...
    def ws_stop(self, id: str, *, discard_memory: bool = False, cancel: _Tok = None) -> str: ...
    def ws_start(self, id: str, *, cancel: _Tok = None) -> str: ...
    def ws_fork(
        self, id: str, *, name: Optional[str] = None, labels: Optional[Dict[str, str]] = None, cancel: _Tok = None
    ) -> str: ...
    def snapshot_create(self, id: str, name: str, *, cancel: _Tok = None) -> str: ...
    def snapshot_list(self, id: str, *, cancel: _Tok = None) -> str: ...
    def snapshot_delete(self, id: str, name: str, *, cancel: _Tok = None) -> str: ...
    def shell_open(
        self,
        id: str,
        *,
        cwd: Optional[str] = None,
        cols: int = 120,
        rows: int = 30,
        env: Optional[Dict[str, str]] = None,
        secret_env: Optional[List[str]] = None,
        cancel: _Tok = None,
    ) -> str: ...
    def shell_read(
        self,
        id: str,
        shell: str,
        *,
        cursor: int = 0,
        max_chars: Optional[int] = None,
        plain: bool = False,
        wait_for_idle_ms: int = 0,
        cancel: _Tok = None,
    ) -> str: ...
    def shell_write(self, id: str, shell: str, input: str, *, newline: bool = True, cancel: _Tok = None) -> str: ...
    def shell_signal(self, id: str, shell: str, *, signal: str = "INT", cancel: _Tok = None) -> str: ...
    def shell_resize(self, id: str, shell: str, *, cols: int, rows: int, cancel: _Tok = None) -> str: ...
    def shell_list(self, id: str, *, cancel: _Tok = None) -> str: ...
    def shell_close(self, id: str, shell: str, *, cancel: _Tok = None) -> str: ...
    def service_start(
        self,
        id: str,
        name: str,
        command: _Cmd,
        *,
        cwd: Optional[str] = None,
        ready_file: Optional[str] = None,
        ready_tcp: Optional[str] = None,
        ready_http: Optional[str] = None,
        ready_command: Optional[str] = None,
        ready_timeout_seconds: int = 30,
        ready_interval_ms: int = 500,
        restart: str = "no",
        env: Optional[Dict[str, str]] = None,
        secret_env: Optional[List[str]] = None,
        publish: Optional[List[str]] = None,
        cancel: _Tok = None,
    ) -> str: ...
    def service_list(self, id: str, *, cancel: _Tok = None) -> str: ...
    def service_status(self, id: str, name: str, *, cancel: _Tok = None) -> str: ...
    def service_logs(self, id: str, name: str, *, tail_lines: int = 200, all: bool = False, cancel: _Tok = None) -> str: ...
    def service_stop(self, id: str, name: str, *, grace_seconds: int = 5, cancel: _Tok = None) -> str: ...

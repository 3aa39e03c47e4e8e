"""A real ``uvicorn tracekws.service.main:create_app --factory`` process on 127.0.0.1.

The one launcher the service benchmarks (``tracekws bench service``, the fairness bench) and
the tests (real-process, crash, two-process and browser tests) share: free port, environment,
log file, wait for ``/readyz``, peak memory, graceful stop or SIGKILL.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_process(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after ``timeout`` seconds; waits for the exit either way."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)


# ``tracekws serve``'s way of running uvicorn (its limits and timeouts), for tests of them
HARDENED = ("import sys, uvicorn; from tracekws.service.server import uvicorn_config; "
            "uvicorn.run('tracekws.service.main:create_app', factory=True, host='127.0.0.1', "
            "port=int(sys.argv[1]), **uvicorn_config())")


class ServerProcess:
    """Start with :meth:`start`; the server keeps its data in ``data_dir`` and its output in
    ``<data_dir>/../server-<port>.log``. ``uvicorn_args``: more command-line options (a later
    one wins); ``hardened``: run as ``tracekws serve`` does (:data:`HARDENED`) instead of the
    plain uvicorn command line."""

    def __init__(self, data_dir: Path, model_path: str | Path | None = None,
                 env: dict[str, str] | None = None, access_log: bool = True,
                 uvicorn_args: tuple[str, ...] = (), hardened: bool = False) -> None:
        self.data_dir, self.model_path = Path(data_dir), model_path
        self.extra_env, self.access_log = env or {}, access_log
        self.uvicorn_args, self.hardened = tuple(uvicorn_args), hardened
        self.proc: subprocess.Popen | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 120.0) -> ServerProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        env = {**os.environ, "OMP_NUM_THREADS": "1", "TRACEKWS_DATA_DIR": str(self.data_dir),
               **({"TRACEKWS_MODEL_PATH": str(self.model_path)} if self.model_path else {}),
               **self.extra_env}
        self.log_path = self.data_dir.parent / f"server-{self.port}.log"
        self.log = open(self.log_path, "wb")  # noqa: SIM115 - closed by stop()
        cmd = [sys.executable, "-m", "uvicorn", "tracekws.service.main:create_app", "--factory",
               "--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning"]
        if not self.access_log:
            cmd.append("--no-access-log")
        cmd += self.uvicorn_args
        if self.hardened:
            cmd = [sys.executable, "-c", HARDENED, str(self.port)]
        # run outside any checkout: the process must import the installed tracekws, never a
        # bare `model`/`service` folder that happens to be in the working directory
        self.proc = subprocess.Popen(cmd, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                     cwd=self.data_dir.parent)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("the server exited: " + self.output()[-2000:])
            try:
                if httpx.get(self.url + "/readyz", timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError("the server did not become ready: " + self.output()[-2000:])

    def output(self) -> str:
        self.log.flush()
        return self.log_path.read_text(errors="replace")

    def peak_rss(self) -> int:
        """VmHWM of the server process, bytes (Linux; 0 elsewhere)."""
        status = Path(f"/proc/{self.proc.pid}/status")
        for line in status.read_text().splitlines() if status.exists() else []:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        return 0

    def kill(self) -> None:
        """SIGKILL: no shutdown handlers, no flushes (a crash)."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc:
            stop_process(self.proc, 15.0)
        if getattr(self, "log", None) and not self.log.closed:
            self.log.close()

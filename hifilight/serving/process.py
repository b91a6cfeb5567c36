"""The service as a process: a worker that ends with its server, and starting, waiting for and stopping
`bentoml serve` on a loopback port (for tests, benchmarks and scripts)."""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

log = logging.getLogger("hifilight.serve")


def exit_with_parent(interval: float = 1.0) -> threading.Thread:
    """Make this process end when the process that started it dies (a BentoML worker whose `bentoml serve` was
    killed with -9 would otherwise keep the port and keep computing): a daemon thread watches the parent id."""
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(interval)
            if os.getppid() != parent:  # re-parented: the server is gone
                log.warning("the server process %d is gone; this worker exits", parent)
                os._exit(0)

    thread = threading.Thread(target=watch, name="exit-with-parent", daemon=True)
    thread.start()
    return thread


def start_service(port: int, env: dict, log, cwd: Path | None = None):
    """`bentoml serve serve.service:HifiService` on 127.0.0.1:port as a subprocess in its own session (stop it with
    `stop_service`)."""
    import subprocess
    import sys

    bentoml = Path(sys.executable).parent / "bentoml"
    cmd = [str(bentoml), "serve", "serve.service:HifiService", "--host", "127.0.0.1", "--port", str(port)]
    return subprocess.Popen(
        cmd,
        cwd=cwd or Path(__file__).resolve().parents[2],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def wait_ready(url: str, proc, timeout: float = 120.0) -> None:
    import time
    import urllib.request

    deadline = time.time() + timeout
    while True:
        try:
            if urllib.request.urlopen(f"{url}/readyz", timeout=2).status == 200:
                return
        except OSError:  # refused, reset or timed out while starting
            pass
        if proc.poll() is not None or time.time() > deadline:
            raise RuntimeError(f"the service at {url} did not become ready")
        time.sleep(0.5)


def stop_service(proc, timeout: float = 20.0) -> None:
    import signal
    import subprocess

    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)

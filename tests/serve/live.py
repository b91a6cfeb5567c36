"""The real service as a subprocess on a free loopback port, for the HTTP, page, learning and default tests."""

import contextlib
import os
import socket
from pathlib import Path

from hifilight.serving import start_service, stop_service, wait_ready


@contextlib.contextmanager
def live_service(folder: Path, settings: dict, cwd: Path | None = None, inherit: bool = True):
    """`bentoml serve` with the HIFILIGHT_* `settings` (over this environment's, or over none of its HIFILIGHT_*
    ones when not `inherit`), its BentoML home and log in `folder`; yields its URL and stops it after."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if inherit or not k.startswith("HIFILIGHT_")}
    env |= {"BENTOML_HOME": str(folder / "bentoml"), "BENTOML_DO_NOT_TRACK": "True", "HF_HUB_OFFLINE": "1", **settings}
    with (folder / "serve.log").open("w") as log:
        proc = start_service(port, env, log, cwd=cwd)
        try:
            wait_ready(f"http://127.0.0.1:{port}", proc)
            yield f"http://127.0.0.1:{port}"
        finally:
            stop_service(proc)

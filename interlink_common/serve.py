"""Running an ASGI app on a listener, the same way for both programs."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import uvicorn
from starlette.types import ASGIApp

from .listen import Listener

log = logging.getLogger("interlink.serve")


def _clear_stale_socket(path: str) -> None:
    """Remove a socket file left by a previous run; refuse to remove anything else."""
    p = Path(path)
    if not p.exists() and not p.is_symlink():
        p.parent.mkdir(parents=True, exist_ok=True)
        return
    if not stat.S_ISSOCK(p.lstat().st_mode):
        raise SystemExit(f"{path} exists and is not a socket; refusing to replace it")
    p.unlink()


def serve(app: ASGIApp, listener: Listener, *, name: str) -> None:
    if listener.scheme == "unix":
        _clear_stale_socket(listener.path)
    config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="on",
                            server_header=False, timeout_graceful_shutdown=10,
                            **listener.uvicorn_kwargs())  # type: ignore[arg-type]
    log.info("%s listening on %s (pid %d)", name, listener.describe(), os.getpid())
    uvicorn.Server(config).run()

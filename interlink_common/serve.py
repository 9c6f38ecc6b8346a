"""Running an ASGI app on a listener, the same way for both programs."""

from __future__ import annotations

import asyncio
import grp
import logging
import os
import socket
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path

import uvicorn
from starlette.types import ASGIApp

from .listen import Listener
from .systemd_notify import notify

log = logging.getLogger("interlink.serve")

# Why the service is not ready yet, or None when it is.
ReadyCheck = Callable[[], Awaitable[str | None]]


def _clear_stale_socket(path: str) -> None:
    """Remove a socket file left by a previous run; refuse to remove anything else, and refuse
    a directory where another user could put a socket of their own in its place."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    problem = _directory_problem(p.parent)
    if problem:
        raise SystemExit(problem)
    if not p.exists() and not p.is_symlink():
        return
    if not stat.S_ISSOCK(p.lstat().st_mode):
        raise SystemExit(f"{path} exists and is not a socket; refusing to replace it")
    try:
        p.unlink()
    except PermissionError:
        raise SystemExit(f"{path} is a socket this user cannot remove (another user's?); "
                         "remove it, or configure a socket in a directory of this program's "
                         "own") from None


_FIX = "put the socket in a directory only root or this program's user writes (e.g. " \
       "/run/interlink, mode 0755, or systemd's RuntimeDirectory=)"


def _directory_problem(directory: Path) -> str | None:
    """Why ``directory`` cannot hold our socket, or None.

    The socket is removed at shutdown, so in a directory others may write (even a sticky one,
    like /tmp) anyone could bind their own socket at the path while the server is down, and
    receive the pods, secrets and tokens sent to it. Every directory above must not let
    anyone else rename it away either: owned by root or us, and not writable by others
    unless sticky.
    """
    here = Path(os.path.abspath(directory))
    st = os.stat(here)
    if st.st_uid not in (0, os.geteuid()) or st.st_mode & 0o022:
        return (f"{here} (owner uid {st.st_uid}, mode {stat.S_IMODE(st.st_mode):o}) lets "
                f"another user replace the socket in it: {_FIX}")
    for above in here.parents:
        st = os.stat(above)
        if st.st_uid not in (0, os.geteuid()) or \
                (st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX):
            return (f"{above} (owner uid {st.st_uid}, mode {stat.S_IMODE(st.st_mode):o}) lets "
                    f"another user move {here} away and put a directory of their own there: "
                    f"{_FIX}")
    return None


def _group_id(group: str) -> int:
    try:
        return int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
    except KeyError:
        raise SystemExit(f"SocketGroup {group!r}: no such group on this host; create it or "
                         "name an existing group") from None


def unix_socket(path: str, group: str = "") -> socket.socket:
    """A listening unix socket at ``path``: mode 0600, or 0660 owned by ``group``.

    uvicorn's own ``uds`` binding leaves the socket 0666, so any host user could send pods.
    The socket is born with its mode (bound under a umask), so no chmod by path is needed
    that a swapped entry could redirect; the group is given without following a symlink.
    Until listen, a connect is refused whatever the owner, so no one gets in in between.
    """
    gid = _group_id(group) if group else None
    _clear_stale_socket(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        # Start-up runs before any other thread, so the process-wide umask is ours here.
        previous = os.umask(0o177 if gid is None else 0o117)
        try:
            sock.bind(path)
        except OSError as exc:
            raise SystemExit(f"cannot listen on {path}: {exc.strerror or exc} (under systemd: "
                             "put the socket in the unit's RuntimeDirectory)") from None
        finally:
            os.umask(previous)
        # Born with the process's group already when SocketGroup is its own (the systemd
        # units' case): no chown, which their system-call filter or user mapping may refuse.
        if gid is not None and os.stat(path, follow_symlinks=False).st_gid != gid:
            try:
                os.chown(path, -1, gid, follow_symlinks=False)
            except OSError as exc:
                raise SystemExit(f"SocketGroup {group!r}: cannot give {path} to this group "
                                 f"({exc.strerror or exc}); run as root or as a member of the "
                                 "group (under systemd: the unit's Group=)") from None
        sock.listen(2048)
    except BaseException:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


def serve(app: ASGIApp, listener: Listener, *, name: str, socket_group: str = "") -> None:
    sockets: list[socket.socket] | None = None
    kwargs = listener.uvicorn_kwargs()
    if listener.scheme == "unix":
        sockets = [unix_socket(listener.path, socket_group)]
        kwargs = {}
    config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="on",
                            server_header=False, timeout_graceful_shutdown=10,
                            **kwargs)  # type: ignore[arg-type]
    log.info("%s listening on %s (pid %d)", name, listener.describe(), os.getpid())
    _Server(config, listener.path if sockets else "",
            getattr(getattr(app, "state", None), "ready", None)).run(sockets=sockets)


class _Server(uvicorn.Server):
    """uvicorn's server, telling systemd when it is ready and removing our socket file when it
    shuts down. (After a SIGTERM uvicorn re-raises the signal once it is done, so code after
    ``run`` never runs.)

    Ready means listening, after the app's start-up (the sidecar's recovery), and, when the
    app has a ``state.ready`` check (the API: its plugin answers), once that passes.
    """

    def __init__(self, config: uvicorn.Config, socket_path: str,
                 ready: ReadyCheck | None = None) -> None:
        super().__init__(config)
        self._socket_path = socket_path
        self._ready = ready
        self._notifier: asyncio.Task[None] | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started and os.environ.get("NOTIFY_SOCKET"):
            self._notifier = asyncio.create_task(self._notify_when_ready())

    async def _notify_when_ready(self) -> None:
        said = ""
        while self._ready is not None and (why := await self._check()) is not None:
            if why != said:
                notify(f"STATUS=not ready: {why}")
                log.info("not ready yet (systemd waits): %s", why)
                said = why
            await asyncio.sleep(1)
        notify("READY=1", "STATUS=ready")

    async def _check(self) -> str | None:
        """The app's readiness check; one that raises is a reason, not the end of waiting
        (systemd would otherwise wait for READY until its start timeout)."""
        assert self._ready is not None
        try:
            return await self._ready()
        except Exception as exc:  # noqa: BLE001 (any failure of the check means not ready)
            log.exception("readiness check failed")
            return f"readiness check failed: {exc or type(exc).__name__}"

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        if self._notifier is not None:
            self._notifier.cancel()
        notify("STOPPING=1")
        try:
            await super().shutdown(sockets)
        finally:
            if self._socket_path:
                Path(self._socket_path).unlink(missing_ok=True)

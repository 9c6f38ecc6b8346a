"""The sidecar's live view of its containers, kept current by Docker's event stream.

A status request reads this view and makes no Docker call: each container is inspected once
when an event says it changed, not once per status poll. If the stream breaks, it is reopened
from the last event seen and everything is re-read, so nothing is missed.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from .containers import Container
from .engine_api import ContainerEngine

log = logging.getLogger("interlink.sidecar.tracker")

Listener = Callable[[str, Container | None], None]

# Events after which a container's reported state can differ. Others (create, kill, stop,
# exec_*, attach, ...) are followed by one of these or change nothing status shows; skipping
# them keeps Docker inspects off the busy moments of a pod's start.
STATE_EVENTS = frozenset({"start", "die", "restart", "pause", "unpause", "update", "rename"})


def has_stopped(info: Container | None) -> bool:
    """Gone, or exited for good (not running, not about to be restarted, not yet started; a
    container whose start failed stays "created" with Docker's error: it will never run)."""
    return info is None or info.has_stopped


class Tracker:
    def __init__(self, engine: ContainerEngine) -> None:
        self.engine = engine
        self._by_id: dict[str, Container] = {}
        # Inspects run in several threads at once; each is numbered when it starts so that a
        # slow, older answer never overwrites a newer one.
        self._seq = itertools.count()
        self._version: dict[str, int] = {}
        self._write = threading.Lock()
        self._exit_waiters: dict[str, list[asyncio.Future[Container | None]]] = \
            defaultdict(list)
        self._listeners: list[Listener] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stream: Any = None
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    # --- reading ----------------------------------------------------------------------------

    def containers_of(self, uid: str) -> list[Container]:
        return [c for c in list(self._by_id.values()) if c.pod_uid == uid]

    def by_pod(self) -> dict[str, list[Container]]:
        out: dict[str, list[Container]] = defaultdict(list)
        for c in list(self._by_id.values()):
            if c.pod_uid:
                out[c.pod_uid].append(c)
        return out

    def get(self, cid: str) -> Container | None:
        return self._by_id.get(cid)

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    # --- updating ---------------------------------------------------------------------------

    def refresh(self, cid: str) -> Container | None:
        """Re-inspect one container (blocking; call from a worker thread)."""
        seq = next(self._seq)
        info = Container.of(self.engine.inspect(cid))
        self._apply(cid, info, seq)
        return info

    def _apply(self, cid: str, info: Container | None, seq: int) -> None:
        key = info.id if info is not None else cid
        with self._write:
            if seq < self._version.get(key, -1):
                return
            self._version[key] = seq
            if info is None:
                self._by_id.pop(cid, None)
                for known, data in list(self._by_id.items()):
                    if data.docker_name == cid:
                        self._by_id.pop(known, None)
            else:
                self._by_id[key] = info
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._notify, cid, info)

    def _notify(self, cid: str, info: Container | None) -> None:
        if has_stopped(info):
            for fut in self._exit_waiters.pop(cid, []):
                if not fut.done():
                    fut.set_result(info)
        for listener in self._listeners:
            try:
                listener(cid, info)
            except Exception:  # a listener's bug must not stop event handling
                log.exception("container listener failed")

    def sync(self) -> None:
        """Read every managed container (blocking; at start and after a broken stream)."""
        seq = next(self._seq)
        seen = set()
        for summary in self.engine.list_managed():
            seen.add(summary["Id"])
            self.refresh(summary["Id"])
        for cid in list(self._by_id):
            if cid not in seen:
                self._apply(cid, None, seq)

    async def wait_exit(self, cid: str) -> Container | None:
        """Wait until the container has stopped (or is gone); returns its last inspect."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Container | None] = loop.create_future()
        self._exit_waiters[cid].append(fut)
        info = await asyncio.to_thread(self.refresh, cid)  # it may have exited already
        if has_stopped(info):
            waiters = self._exit_waiters.get(cid, [])
            if fut in waiters:
                waiters.remove(fut)
            return info
        return await fut

    # --- the event stream -------------------------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._thread = threading.Thread(target=self._run, name="docker-events", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        stream = self._stream
        if stream is not None:
            try:
                stream.close()
            except Exception:
                pass

    def _run(self) -> None:
        since = time.time()
        while not self._stopping.is_set():
            try:
                self._stream = self.engine.events(since=since)
                if self._stopping.is_set():
                    break
                # Anything that changed while the stream was closed is picked up here.
                self.sync()
                for event in self._stream:
                    since = event.get("time", since)
                    cid = event.get("id") or (event.get("Actor") or {}).get("ID")
                    if not cid:
                        continue
                    action = str(event.get("Action") or event.get("status") or "")
                    log.debug("docker event %s %s", action, cid[:12])
                    if action == "destroy":
                        self._apply(cid, None, next(self._seq))
                    elif action in STATE_EVENTS:
                        self.refresh(cid)
            except Exception as exc:
                if self._stopping.is_set():
                    break
                log.warning("Docker event stream broke (%s); reopening", exc)
                time.sleep(1)

"""An in-memory container engine (``docker_sidecar.engine_api.ContainerEngine``), as httpx
ships ``MockTransport``: pod workers and the pod manager run on it without Docker.

It models what the sidecar reads: containers and their states (created, running, exited, a
start that failed), exit codes, Docker's restart policies and ``RestartCount``, names that
must be unique, images, tmpfs volumes, and the event stream the tracker follows (``start``,
``die``, ``restart``, ``destroy``, in the order things happen). A container does what its
script says, one outcome per start (``script``): run until stopped, exit with a code, or fail
to start; once the script is spent it runs until stopped. ``finish`` ends a running one from
outside, as its process exiting would. No process ever exists: ``Pid`` is 0, so the sidecar
kills through the engine.

``calls`` records every call that changes something, in order: ``(op, name, *details)``.
"""

from __future__ import annotations

import copy
import itertools
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from docker_sidecar import labels as L
from docker_sidecar.engine import EngineError

ZERO_TIME = "0001-01-01T00:00:00Z"


@dataclass(frozen=True)
class Outcome:
    """What one start of a container does."""

    exit_code: int | None = None  # None: runs until stopped
    start_error: str = ""  # the start fails with this error
    oom: bool = False
    logs: bytes = b""
    stop_exit_code: int = 137  # the code it exits with when stopped


def Run(logs: bytes = b"", stop_exit_code: int = 137) -> Outcome:
    return Outcome(logs=logs, stop_exit_code=stop_exit_code)


def Exit(code: int, logs: bytes = b"", oom: bool = False) -> Outcome:
    return Outcome(exit_code=code, logs=logs, oom=oom)


def StartError(message: str) -> Outcome:
    return Outcome(start_error=message)


_last_ns = 0


def _now() -> str:
    """Docker's RFC 3339 time with nanoseconds, never twice the same (a container's
    StartedAt tells its runs apart)."""
    global _last_ns
    _last_ns = max(time.time_ns(), _last_ns + 1)
    seconds, ns = divmod(_last_ns, 1_000_000_000)
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S") + \
        f".{ns:09d}Z"


@dataclass
class FakeContainer:
    id: str
    name: str
    image: str
    labels: dict[str, str]
    tty: bool
    restart_policy: str  # "", "always", "on-failure", "unless-stopped"
    ip: str = ""
    state: dict[str, Any] = field(default_factory=lambda: {
        "Status": "created", "Running": False, "Restarting": False, "ExitCode": 0,
        "Error": "", "OOMKilled": False, "Pid": 0, "StartedAt": ZERO_TIME,
        "FinishedAt": ZERO_TIME})
    restart_count: int = 0
    logs: bytes = b""
    outcome: Outcome | None = None  # of the current run

    def inspect(self) -> dict[str, Any]:
        return copy.deepcopy({
            "Id": self.id, "Name": "/" + self.name, "Image": f"sha256:{self.image}",
            "Config": {"Labels": self.labels, "Tty": self.tty, "Image": self.image},
            "State": self.state, "RestartCount": self.restart_count,
            "NetworkSettings": {"IPAddress": self.ip, "Networks": {}},
            "LogPath": "", "GraphDriver": {"Data": {}}})


class FakeEvents:
    """One open event stream; ``close()`` ends it, as docker-py's does."""

    _END = object()

    def __init__(self, on_close: Callable[[FakeEvents], None]) -> None:
        self.queue: queue.Queue[Any] = queue.Queue()
        self._on_close = on_close

    def __iter__(self) -> Iterator[dict[str, Any]]:
        while True:
            item = self.queue.get()
            if item is self._END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        self._on_close(self)
        self.queue.put(self._END)


class FakeEngine:
    def __init__(self, instance: str = "default",
                 images: tuple[str, ...] = ("registry.k8s.io/pause:3.10",)) -> None:
        self.instance = instance
        self.images: dict[str, str] = {ref: "" for ref in images}  # ref -> image user
        self.pull_errors: dict[str, str] = {}  # ref -> the registry's error
        self.scripts: dict[str, list[Outcome]] = {}  # container name in the pod -> outcomes
        self.exec_codes: dict[tuple[str, str], int] = {}  # (container name, argv[0]) -> code
        self.calls: list[tuple[Any, ...]] = []
        self.containers: dict[str, FakeContainer] = {}
        self.volumes: dict[str, dict[str, str]] = {}
        self._ids = itertools.count(1)
        self._ips = itertools.count(2)
        self._lock = threading.RLock()
        self._streams: list[FakeEvents] = []

    # --- scripting ----------------------------------------------------------------------------

    def script(self, name: str, *outcomes: Outcome) -> None:
        """What the next starts of the pod's container ``name`` do (every pod's)."""
        self.scripts[name] = list(outcomes)

    def named(self, name: str) -> list[FakeContainer]:
        """The Docker containers of a container ``name`` in its pod, oldest first."""
        with self._lock:
            return sorted((c for c in self.containers.values()
                           if c.labels.get(L.CONTAINER) == name
                           and c.labels.get(L.ROLE) != L.ROLE_INFRA),
                          key=lambda c: int(c.labels.get(L.ATTEMPT, "0")))

    def finish(self, name: str, code: int) -> None:
        """The running container ``name`` exits by itself with ``code``."""
        with self._lock:
            c = next(c for c in reversed(self.named(name)) if c.state["Running"])
            self._exit(c, code, by_stop=False)

    def ops(self, *kinds: str) -> list[tuple[Any, ...]]:
        with self._lock:
            return [c for c in self.calls if not kinds or c[0] in kinds]

    # --- engine -------------------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        return {"NCPU": 4, "MemTotal": 8 << 30, "Name": "fake-node"}

    def image_id(self, ref: str) -> str | None:
        with self._lock:
            return f"sha256:{ref}" if ref in self.images else None

    def image_user(self, ref: str) -> str | None:
        with self._lock:
            return self.images.get(ref)

    def pull(self, ref: str, auth: dict[str, str] | None = None) -> None:
        with self._lock:
            self.calls.append(("pull", ref))
            if ref in self.pull_errors:
                raise EngineError(self.pull_errors[ref])
            self.images[ref] = ""

    def create(self, args: dict[str, Any], host_config: dict[str, Any]) -> str:
        with self._lock:
            name = args["name"]
            if any(c.name == name for c in self.containers.values()):
                raise EngineError(f'Conflict. The container name "/{name}" is already in use')
            if args["image"] not in self.images:
                raise EngineError(f"No such image: {args['image']}")
            policy = (host_config.get("restart_policy") or {}).get("Name", "")
            cid = f"{next(self._ids):064x}"
            labels = dict(args.get("labels") or {})
            infra = labels.get(L.ROLE) == L.ROLE_INFRA
            self.containers[cid] = FakeContainer(
                id=cid, name=name, image=args["image"], labels=labels,
                tty=bool(args.get("tty")), restart_policy=policy,
                ip=f"10.88.0.{next(self._ips)}" if infra else "")
            self.calls.append(("create", name))
            return cid

    def _find(self, cid: str) -> FakeContainer | None:
        if cid in self.containers:
            return self.containers[cid]
        return next((c for c in self.containers.values() if c.name == cid), None)

    def start(self, cid: str) -> None:
        with self._lock:
            c = self._find(cid)
            if c is None:
                raise EngineError(f"No such container: {cid}")
            self.calls.append(("start", c.name))
            if c.state["Running"]:
                return
            self._run(c)

    def _next_outcome(self, c: FakeContainer) -> Outcome:
        if c.labels.get(L.ROLE) == L.ROLE_INFRA:
            return Run()
        script = self.scripts.get(c.labels.get(L.CONTAINER, ""), [])
        return script.pop(0) if script else Run()

    def _run(self, c: FakeContainer) -> None:
        outcome = self._next_outcome(c)
        if outcome.start_error:
            # As Docker: the container stays "created" with the error; no event is sent.
            c.state.update(Error=outcome.start_error, ExitCode=128)
            raise EngineError(outcome.start_error)
        c.outcome = outcome
        c.logs += outcome.logs
        c.state.update(Status="running", Running=True, Restarting=False, Error="",
                       ExitCode=0, OOMKilled=False, StartedAt=_now(), FinishedAt=ZERO_TIME)
        self._emit(c, "start")
        if outcome.exit_code is not None:
            self._exit(c, outcome.exit_code, by_stop=False, oom=outcome.oom)

    def _exit(self, c: FakeContainer, code: int, *, by_stop: bool, oom: bool = False) -> None:
        c.state.update(Status="exited", Running=False, ExitCode=code, OOMKilled=oom,
                       FinishedAt=_now())
        self._emit(c, "die")
        if by_stop:
            return
        # Docker's restart policy (its own back-off is left out: restarts are immediate).
        if c.restart_policy in ("always", "unless-stopped") or (
                c.restart_policy == "on-failure" and code != 0):
            c.restart_count += 1
            self._run(c)

    def stop(self, cid: str, timeout: int) -> None:
        with self._lock:
            c = self._find(cid)
            if c is None:
                return
            self.calls.append(("stop", c.name, timeout))
            if c.state["Running"]:
                assert c.outcome is not None
                self._exit(c, c.outcome.stop_exit_code, by_stop=True)

    def restart(self, cid: str, timeout: int) -> None:
        with self._lock:
            c = self._find(cid)
            if c is None:
                raise EngineError(f"No such container: {cid}")
            self.calls.append(("restart", c.name, timeout))
            if c.state["Running"]:
                assert c.outcome is not None
                self._exit(c, c.outcome.stop_exit_code, by_stop=True)
            self._run(c)
            self._emit(c, "restart")

    def remove(self, cid: str) -> None:
        with self._lock:
            c = self._find(cid)
            if c is None:
                return
            self.calls.append(("remove", c.name))
            if c.state["Running"]:
                assert c.outcome is not None
                self._exit(c, c.outcome.stop_exit_code, by_stop=True)
            del self.containers[c.id]
            self._emit(c, "destroy")

    def inspect(self, cid: str) -> dict[str, Any] | None:
        with self._lock:
            c = self._find(cid)
            return c.inspect() if c is not None else None

    def list_managed(self) -> list[dict[str, Any]]:
        with self._lock:
            return [{"Id": c.id, "Names": ["/" + c.name], "Labels": dict(c.labels),
                     "State": c.state["Status"]}
                    for c in self.containers.values()
                    if c.labels.get(L.MANAGED) == self.instance]

    def exec(self, cid: str, cmd: list[str]) -> tuple[int, bytes]:
        with self._lock:
            c = self._find(cid)
            if c is None:
                raise EngineError(f"No such container: {cid}")
            self.calls.append(("exec", c.name, list(cmd)))
            return self.exec_codes.get((c.labels.get(L.CONTAINER, ""), cmd[0] if cmd else ""),
                                       0), b""

    def logs(self, cid: str, *, follow: bool, tail: int | None, timestamps: bool,
             since: float | None) -> Iterator[bytes]:
        with self._lock:
            c = self._find(cid)
            data = c.logs if c is not None else b""
        if tail:
            data = b"".join(data.splitlines(keepends=True)[-tail:])
        return iter([data] if data else [])

    def create_tmpfs_volume(self, name: str, size_bytes: int | None,
                            labels: dict[str, str]) -> None:
        with self._lock:
            self.calls.append(("volume_create", name))
            self.volumes[name] = dict(labels)

    def remove_volume(self, name: str) -> None:
        with self._lock:
            self.calls.append(("volume_remove", name))
            self.volumes.pop(name, None)

    def list_volumes(self, uid: str) -> list[str]:
        with self._lock:
            return [n for n, labels in self.volumes.items()
                    if labels.get(L.MANAGED) == self.instance and labels.get(L.POD_UID) == uid]

    # --- events -------------------------------------------------------------------------------

    def events(self, since: float | None) -> FakeEvents:
        stream = FakeEvents(self._closed)
        with self._lock:
            self._streams.append(stream)
        return stream

    def _closed(self, stream: FakeEvents) -> None:
        with self._lock:
            if stream in self._streams:
                self._streams.remove(stream)

    def _emit(self, c: FakeContainer, action: str) -> None:
        if c.labels.get(L.MANAGED) != self.instance:
            return
        event = {"id": c.id, "Action": action, "time": int(time.time()),
                 "Actor": {"ID": c.id, "Attributes": dict(c.labels)}}
        for stream in list(self._streams):
            stream.queue.put(event)

    def break_stream(self) -> None:
        """End every open event stream, as a restarted dockerd would."""
        with self._lock:
            streams, self._streams = self._streams, []
        for stream in streams:
            stream.queue.put(RuntimeError("stream broke"))

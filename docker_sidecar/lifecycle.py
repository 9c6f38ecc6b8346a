"""What a kubelet does for a running container, done by the sidecar: postStart hooks, startup,
liveness and readiness probes, restarts on probe or hook failure, and back-off for containers
that cannot start.

One ``Supervisor`` per main container. It follows the container through its instances: each
time Docker starts it again (restart policy), the hooks and probes start over, as on a node.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from .containers import Container, State
from .probes import ProbeSettings, run_handler

log = logging.getLogger("interlink.sidecar.lifecycle")


@dataclass
class Health:
    """The verdicts status reports for one container (memory only; probes rerun after a
    sidecar restart, as a kubelet's do after its own)."""

    started: bool = False
    ready: bool = False
    instance: str = ""  # StartedAt of the Docker instance these verdicts are about
    killed_because: str = ""  # why the sidecar last killed the container, for lastState
    backoff: str = ""  # CrashLoopBackOff message while a start failure waits for its retry
    extra_restarts: int = 0  # restarts Docker's RestartCount cannot see (see Host.kill)


class Host(Protocol):
    """What a supervisor needs from the container runtime (``runtime.ContainerRuntime``)."""

    def current(self, uid: str, name: str) -> Container | None: ...
    async def exec_in(self, cid: str, command: list[str], timeout: float) -> int: ...
    async def kill(self, info: Container, grace: int, *, restart: bool) -> bool: ...
    async def recreate(self, uid: str, name: str) -> None: ...


@dataclass
class Supervisor:
    host: Host
    uid: str
    container: dict[str, Any]  # the container as sent
    pod_ip: str
    restart_policy: str
    grace: int
    backoff_initial: float
    backoff_max: float
    health: Health = field(default_factory=Health)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def name(self) -> str:
        return self.container["name"]

    async def run(self) -> None:
        instance: asyncio.Task[None] | None = None
        failures = 0
        try:
            while True:
                self.changed.clear()
                info = self.host.current(self.uid, self.name)
                state = info.state if info is not None else State({})
                running = state.running and not state.restarting
                key = state.started_at if running else ""
                if key != self.health.instance:
                    if instance is not None:
                        instance.cancel()
                        instance = None
                    self.health = Health(instance=key, killed_because=self.health.killed_because
                                         if not key else "",
                                         extra_restarts=self.health.extra_restarts)
                    if running and info is not None:
                        failures = 0
                        instance = asyncio.create_task(self._instance(info))
                if info is not None and state.start_failed and self.restart_policy != "Never":
                    delay = min(self.backoff_initial * 2 ** failures, self.backoff_max)
                    failures += 1
                    self.health.backoff = (f"back-off {delay:g}s restarting failed container "
                                           f"{self.name}: {state.error}")
                    await asyncio.sleep(delay)
                    self.health.backoff = ""
                    await self.host.recreate(self.uid, self.name)
                    continue
                await self.changed.wait()
        finally:
            if instance is not None:
                instance.cancel()

    async def _instance(self, info: Container) -> None:
        """Hooks and probes for one run of the container."""
        lifecycle = self.container.get("lifecycle") or {}
        if lifecycle.get("postStart"):
            ok, detail = await run_handler(lifecycle["postStart"], self.container, self.pod_ip,
                                           timeout=max(self.grace, 30), exec_in=self._exec(info))
            if not ok:
                await self._kill(info, f"FailedPostStartHook: {detail}")
                return
        startup = self.container.get("startupProbe")
        if startup and not await self._until_started(info, startup):
            await self._kill(info, "startup probe failed")
            return
        self.health.started = True
        loops = [self._readiness(info, self.container["readinessProbe"])] \
            if self.container.get("readinessProbe") else []
        if not self.container.get("readinessProbe"):
            self.health.ready = True
        if self.container.get("livenessProbe"):
            loops.append(self._liveness(info, self.container["livenessProbe"]))
        if loops:
            await asyncio.gather(*loops)

    def _exec(self, info: Container) -> Callable[[list[str], float], Awaitable[int]]:
        return lambda command, timeout: self.host.exec_in(info.id, command, timeout)

    async def _probe(self, info: Container, probe: dict[str, Any],
                     settings: ProbeSettings) -> bool:
        ok, _ = await run_handler(probe, self.container, self.pod_ip, timeout=settings.timeout,
                                  exec_in=self._exec(info))
        return ok

    async def _until_started(self, info: Container, probe: dict[str, Any]) -> bool:
        settings = ProbeSettings.from_spec(probe)
        await asyncio.sleep(settings.initial_delay)
        failures = 0
        while True:
            if await self._probe(info, probe, settings):
                return True
            failures += 1
            if failures >= settings.failure_threshold:
                return False
            await asyncio.sleep(settings.period)

    async def _readiness(self, info: Container, probe: dict[str, Any]) -> None:
        settings = ProbeSettings.from_spec(probe)
        await asyncio.sleep(settings.initial_delay)
        successes = failures = 0
        while True:
            if await self._probe(info, probe, settings):
                successes, failures = successes + 1, 0
                if successes >= settings.success_threshold:
                    self.health.ready = True
            else:
                successes, failures = 0, failures + 1
                if failures >= settings.failure_threshold:
                    self.health.ready = False
            await asyncio.sleep(settings.period)

    async def _liveness(self, info: Container, probe: dict[str, Any]) -> None:
        settings = ProbeSettings.from_spec(probe)
        await asyncio.sleep(settings.initial_delay)
        failures = 0
        while True:
            if await self._probe(info, probe, settings):
                failures = 0
            else:
                failures += 1
                if failures >= settings.failure_threshold:
                    await self._kill(info, "liveness probe failed")
                    return
            await asyncio.sleep(settings.period)

    async def _kill(self, info: Container, reason: str) -> None:
        log.info("container %s of pod %s: %s; killing it (restartPolicy %s)", self.name,
                 self.uid, reason, self.restart_policy)
        self.health.killed_because = reason
        self.health.ready = False
        restart = self.restart_policy != "Never"
        if not await self.host.kill(info, self.grace, restart=restart) and restart:
            self.health.extra_restarts += 1


class Supervisors:
    """The supervisors of every pod, keyed by (pod UID, container name)."""

    def __init__(self) -> None:
        self._by_key: dict[tuple[str, str], tuple[Supervisor, asyncio.Task[None]]] = {}

    def start(self, supervisor: Supervisor) -> None:
        key = (supervisor.uid, supervisor.name)
        if key in self._by_key:
            return
        self._by_key[key] = (supervisor, asyncio.create_task(supervisor.run()))

    def health(self, uid: str, name: str) -> Health | None:
        entry = self._by_key.get((uid, name))
        return entry[0].health if entry else None

    def poke(self, uid: str, name: str) -> None:
        entry = self._by_key.get((uid, name))
        if entry:
            entry[0].changed.set()

    async def stop(self, uid: str) -> None:
        tasks = [self._by_key.pop(key)[1] for key in [k for k in self._by_key if k[0] == uid]]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

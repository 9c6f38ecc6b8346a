"""Termination messages: Kubernetes' terminationMessagePath, and FallbackToLogsOnError.

Read once, when a container stops, and kept by (container ID, FinishedAt), so that status
never reads a file or a log.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from .containers import Container
from .engine_api import ContainerEngine
from .pod_store import PodStore
from .threads import blocking

if TYPE_CHECKING:
    from .lifecycle import Health
    from .pod_worker import PodRecord

# Kubernetes' fallback: the last 80 lines or 2048 bytes of the log.
FALLBACK_LOG_LINES, FALLBACK_LOG_BYTES = 80, 2048


class TerminationMessages:
    def __init__(self, engine: ContainerEngine, store: PodStore,
                 record_of: Callable[[str], PodRecord | None]) -> None:
        self.engine = engine
        self.store = store
        self._record_of = record_of
        self._messages: dict[tuple[str, str], str] = {}

    def on_change(self, info: Container) -> None:
        """A container changed: when it has just stopped, read its message (in a task)."""
        state = info.state
        if state.running or not state.finished or info.is_infra:
            return
        key = (info.id, state.finished_at)
        if key not in self._messages:
            self._messages[key] = ""
            asyncio.get_running_loop().create_task(self._read(info))

    async def _read(self, info: Container) -> None:
        record = self._record_of(info.pod_uid)
        if record is None or record.plan is None:
            return
        plan = next((c for c in record.plan.containers if c.name == info.name), None)
        if plan is None:
            return
        message = self.store.read_termination_file(plan)
        code = info.state.exit_code or 0
        if not message.strip() and code != 0 and \
                plan.spec.get("terminationMessagePolicy") == "FallbackToLogsOnError":
            with contextlib.suppress(Exception):
                chunks = await blocking(lambda: b"".join(self.engine.logs(
                    info.id, follow=False, tail=FALLBACK_LOG_LINES, timestamps=False,
                    since=None)))
                message = chunks[-FALLBACK_LOG_BYTES:].decode("utf-8", "replace")
        self._messages[(info.id, info.state.finished_at)] = message

    def message(self, info: Container | None, health: Health | None) -> str:
        """What status shows as the container's termination message."""
        if info is None:
            return ""
        message = self._messages.get((info.id, info.state.finished_at), "")
        if not message and health is not None and health.killed_because:
            message = f"killed by the sidecar: {health.killed_because}"
        return message

    def forget(self, ids: Iterable[str]) -> None:
        """Drop the messages of removed containers."""
        gone = set(ids)
        self._messages = {k: v for k, v in self._messages.items() if k[0] not in gone}

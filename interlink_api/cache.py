"""The API server's pod status cache (docs/PROTOCOL.md section 1).

Statuses are kept as the plugin sent them (decoded JSON), keyed by pod UID, so the VK gets the
plugin's answer unchanged and nothing is re-encoded on the hot path.
"""

from __future__ import annotations

from typing import Any

# Pods in these phases can still change; everything else is answered from the cache once known.
LIVE_PHASES = frozenset({"Running", "Pending"})


class StatusCache:
    def __init__(self) -> None:
        self._by_uid: dict[str, dict[str, Any]] = {}

    def __len__(self) -> int:
        return len(self._by_uid)

    def needs_refresh(self, uid: str, phase: str) -> bool:
        return phase in LIVE_PHASES or uid not in self._by_uid

    def store(self, statuses: list[dict[str, Any]]) -> None:
        for status in statuses:
            uid = status.get("UID")
            if isinstance(uid, str) and uid:
                self._by_uid[uid] = status

    def get(self, uid: str) -> dict[str, Any] | None:
        return self._by_uid.get(uid)

    def all(self) -> list[dict[str, Any]]:
        return list(self._by_uid.values())

    def evict(self, uid: str) -> None:
        self._by_uid.pop(uid, None)

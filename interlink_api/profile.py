"""Which VK generation is calling: ``legacy`` (0.1.x-0.2.x) or ``current`` (0.5+)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from .plugin import SESSION_HEADER

Profile = Literal["legacy", "current"]


def detect_profile(forced: str, headers: Mapping[str, str]) -> Profile:
    """The current VK sends ``InterLink-Http-Session`` on every call; the legacy VK never does."""
    if forced in ("legacy", "current"):
        return forced  # type: ignore[return-value]
    return "current" if headers.get(SESSION_HEADER) else "legacy"

"""Node ports handed out one per notebook server, so that two users never get the same one.

A hub's servers share one node address: each needs a port of its own there (the published
``containerPort``, or the remote end of its tunnel). The pool hands out the lowest free port
of the configured range and remembers who holds it; a hub that restarts puts back what its
servers' saved state says they hold before it hands out anything new.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field


class PortsExhausted(Exception):
    """Every port of the range is held."""


@dataclass
class PortPool:
    """The ports ``first..last`` (inclusive), each held by at most one owner at a time."""

    first: int
    last: int
    _holder: dict[int, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 1 <= self.first <= self.last <= 65535:
            raise ValueError(f"port range {self.first}-{self.last} is not within 1-65535 "
                             "with the first port not above the last")

    def take(self, owner: str, avoid: Iterable[int] = ()) -> int:
        """The port ``owner`` holds, or the lowest free one (not in ``avoid``), now held."""
        held = self.held_by(owner)
        skip = set(avoid)
        if held is not None and held not in skip:
            return held
        if held is not None:
            self.release(owner)
        for port in range(self.first, self.last + 1):
            if port not in self._holder and port not in skip:
                self._holder[port] = owner
                return port
        raise PortsExhausted(
            f"all {self.last - self.first + 1} ports of {self.first}-{self.last} are held by "
            "running servers (or were refused by the node); widen the range or stop a server")

    def hold(self, owner: str, port: int) -> bool:
        """Put back a port ``owner`` held before (a hub restart); False when it is outside the
        range or someone else holds it."""
        if not self.first <= port <= self.last or self._holder.get(port, owner) != owner:
            return False
        self.release(owner)
        self._holder[port] = owner
        return True

    def release(self, owner: str) -> None:
        """Give back whatever ``owner`` holds (nothing when it holds none)."""
        for port in [p for p, o in self._holder.items() if o == owner]:
            del self._holder[port]

    def held_by(self, owner: str) -> int | None:
        return next((p for p, o in self._holder.items() if o == owner), None)

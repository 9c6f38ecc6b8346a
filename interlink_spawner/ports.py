"""Node ports handed out one per notebook server, so that two servers never get the same one.

A hub's servers share one node address: each needs a port of its own there (the published
``containerPort``, or the remote end of its tunnel). The book hands out the lowest free port
of the range asked for and remembers who holds it, whatever range it came from (a profile may
give its servers a range of their own, overlapping another's); a hub that restarts puts back
what its servers' saved state says they hold.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field


class PortsExhausted(Exception):
    """Every port of the range is held."""


def check_range(first: int, last: int) -> None:
    """A range of node ports: ``first..last`` inclusive, within 1-65535."""
    if not 1 <= first <= last <= 65535:
        raise ValueError(f"port range {first}-{last} is not within 1-65535 with the first "
                         "port not above the last")


@dataclass
class PortBook:
    """Which owner holds which port; each port held by at most one owner at a time."""

    _holder: dict[int, str] = field(default_factory=dict)

    def take(self, owner: str, first: int, last: int, avoid: Iterable[int] = ()) -> int:
        """The port ``owner`` holds in ``first..last``, or the lowest free one there (not in
        ``avoid``), now held; anything else it held is given back."""
        check_range(first, last)
        held = self.held_by(owner)
        skip = set(avoid)
        if held is not None and first <= held <= last and held not in skip:
            return held
        self.release(owner)
        for port in range(first, last + 1):
            if port not in self._holder and port not in skip:
                self._holder[port] = owner
                return port
        raise PortsExhausted(
            f"all {last - first + 1} ports of {first}-{last} are held by running servers (or "
            "were refused by the node); widen the range or stop a server")

    def hold(self, owner: str, port: int) -> bool:
        """Put back a port ``owner`` held before (a hub restart); False when someone else
        holds it or it is no port."""
        if not 1 <= port <= 65535 or self._holder.get(port, owner) != owner:
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

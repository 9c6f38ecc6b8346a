"""``/getLogs`` options mapped onto Docker's log API, with Kubernetes semantics.

Docker filters by ``tail``, ``since`` and adds timestamps itself. ``Bytes`` is Kubernetes'
``limitBytes``: the first N bytes of the selected output (upstream's plugin returned the last
N+1). ``Previous`` is best effort: an init container's previous attempt when one is kept;
otherwise the current container's log, which with Docker restart policies already spans
every restart.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from interlink_common.wire import ContainerLogOpts


@dataclass(frozen=True)
class LogParams:
    follow: bool
    tail: int | None
    timestamps: bool
    since: float | None
    limit_bytes: int | None


def log_params(opts: ContainerLogOpts, now: float | None = None) -> LogParams:
    since: float | None = None
    if opts.SinceSeconds > 0:
        # Logs newer than N seconds ago (upstream computed the opposite window).
        since = (now if now is not None else time.time()) - opts.SinceSeconds
    elif opts.SinceTime is not None:
        since = opts.SinceTime.timestamp()
    return LogParams(follow=opts.Follow, tail=opts.Tail if opts.Tail > 0 else None,
                     timestamps=opts.Timestamps, since=since,
                     limit_bytes=opts.Bytes if opts.Bytes > 0 else None)


def first_bytes(chunks: Iterable[bytes], limit: int | None) -> Iterator[bytes]:
    """Pass chunks through, stopping after ``limit`` bytes in total."""
    left = limit
    for chunk in chunks:
        if left is None:
            yield chunk
            continue
        if len(chunk) >= left:
            if left:
                yield chunk[:left]
            return
        left -= len(chunk)
        yield chunk

"""How much disk a directory a pod writes into takes, counted as ``du`` counts it.

The pod owns everything below the directory and can change it while it is measured: rename a
subdirectory and put a symlink to ``/`` in its place, so that a walk by path would go on in the
host's root (slow, and a measure of the wrong thing). The walk here opens each directory
relative to its parent's file descriptor with ``O_NOFOLLOW``, so a swapped-in symlink is
counted as a symlink and never entered, and it stays on the top directory's mount (a claim or
host path mounted inside is not the pod's usage).

A pod can also nest directories deeper than any walk should hold file descriptors for, or make
more entries than one walk should read; past ``MAX_DEPTH`` levels or ``MAX_ENTRIES`` entries
the usage cannot be known, which ``Unmeasurable`` says, and the caller treats it as over the
limit: otherwise any amount of data could hide below the last level measured.

What no walk sees: a file the pod deleted but still holds open, and data the pod moves from a
directory not yet read into one already read while the walk runs. docs/SECURITY.md says so.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path

from .host_fs import mount_id

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
MAX_DEPTH = 512
# A walk stops here: one pod's millions of files must not hold up every other pod's check.
MAX_ENTRIES = 1_000_000


class Unmeasurable(Exception):
    """The usage below a directory cannot be measured (nested too deep, too many entries)."""


def disk_usage(top: Path) -> int:
    """Bytes allocated at and below ``top``: blocks (a sparse file costs what it stores), hard
    links once, symlinks not followed, other filesystems and mounts not entered. 0 when
    ``top`` does not exist. ``top`` itself is the caller's (trusted) path. Raises
    ``Unmeasurable`` past ``MAX_DEPTH`` levels or ``MAX_ENTRIES`` entries."""
    try:
        fd = os.open(top, _DIR)
    except OSError:
        return 0
    seen: set[tuple[int, int]] = set()
    entries = 0
    # Each frame: an open directory and the iterator over its entries (read as we go, so a
    # directory of a million names is never held in memory at once).
    stack: list[tuple[int, Iterator[os.DirEntry[str]]]] = []
    try:
        root = os.fstat(fd)
        mount = mount_id(fd)
        total = root.st_blocks * 512
        stack.append((fd, _entries(fd)))
        fd = -1  # the stack owns it now
        while stack:
            dir_fd, it = stack[-1]
            entry = next(it, None)
            if entry is None:
                stack.pop()
                os.close(dir_fd)
                continue
            entries += 1
            if entries > MAX_ENTRIES:
                raise Unmeasurable(f"{top} holds more than {MAX_ENTRIES} entries")
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue  # removed while we looked
            if st.st_dev != root.st_dev:
                continue
            if st.st_nlink > 1 and not stat.S_ISDIR(st.st_mode):
                key = (st.st_dev, st.st_ino)
                if key in seen:
                    continue
                seen.add(key)
            total += st.st_blocks * 512
            if not stat.S_ISDIR(st.st_mode):
                continue
            try:
                child = os.open(entry.name, _DIR, dir_fd=dir_fd)
            except OSError:
                continue  # swapped for a symlink or removed since the stat: not ours to enter
            try:
                if os.fstat(child).st_ino != st.st_ino or mount_id(child) != mount:
                    os.close(child)  # swapped since the stat, or another mount of this filesystem
                    continue
            except BaseException:
                os.close(child)
                raise
            if len(stack) >= MAX_DEPTH:
                os.close(child)
                raise Unmeasurable(f"directories below {top} nest deeper than {MAX_DEPTH} levels")
            stack.append((child, _entries(child)))
        return total
    finally:
        if fd >= 0:
            os.close(fd)
        for dir_fd, _ in stack:  # what an error or Unmeasurable left open
            with contextlib.suppress(OSError):
                os.close(dir_fd)


def _entries(fd: int) -> Iterator[os.DirEntry[str]]:
    """The entries of an open directory; scandir works on a duplicate, so ``fd`` stays ours."""
    try:
        with os.scandir(fd) as it:
            yield from it
    except OSError:
        return

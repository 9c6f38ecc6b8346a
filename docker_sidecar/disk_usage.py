"""How much disk a directory a pod writes into takes, counted as ``du`` counts it.

The pod owns everything below the directory and can change it while it is measured: rename a
subdirectory and put a symlink to ``/`` in its place, so that a walk by path would go on in the
host's root (slow, and a measure of the wrong thing). The walk here opens each directory
relative to its parent's file descriptor with ``O_NOFOLLOW``, so a swapped-in symlink is
counted as a symlink and never entered, and it stays on the top directory's mount (a claim or
host path mounted inside is not the pod's usage).

A pod can also nest directories deeper than any walk should hold file descriptors for; past
``MAX_DEPTH`` levels the usage cannot be known, which ``TooDeep`` says, and the caller treats
it as over the limit: otherwise any amount of data could hide below the last level measured.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

from .host_fs import mount_id

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
MAX_DEPTH = 512


class TooDeep(Exception):
    """Directories nest deeper than ``MAX_DEPTH``: the usage below cannot be measured."""


def disk_usage(top: Path) -> int:
    """Bytes allocated at and below ``top``: blocks (a sparse file costs what it stores), hard
    links once, symlinks not followed, other filesystems and mounts not entered. 0 when
    ``top`` does not exist. ``top`` itself is the caller's (trusted) path."""
    try:
        fd = os.open(top, _DIR)
    except OSError:
        return 0
    seen: set[tuple[int, int]] = set()
    # Each frame: an open directory and the names in it still to look at.
    stack: list[tuple[int, list[str]]] = [(fd, [])]
    try:
        root = os.fstat(fd)
        mount = mount_id(fd)
        total = root.st_blocks * 512
        stack[0] = (fd, _names(fd))
        while stack:
            dir_fd, names = stack[-1]
            if not names:
                stack.pop()
                os.close(dir_fd)
                continue
            name = names.pop()
            try:
                st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
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
                child = os.open(name, _DIR, dir_fd=dir_fd)
            except OSError:
                continue  # swapped for a symlink or removed since the stat: not ours to enter
            if os.fstat(child).st_ino != st.st_ino or mount_id(child) != mount:
                os.close(child)  # swapped since the stat, or another mount of this filesystem
                continue
            if len(stack) >= MAX_DEPTH:
                os.close(child)
                raise TooDeep(f"directories below {top} nest deeper than {MAX_DEPTH} levels")
            stack.append((child, _names(child)))
        return total
    finally:
        for dir_fd, _ in stack:  # what an error or TooDeep left open
            with contextlib.suppress(OSError):
                os.close(dir_fd)


def _names(fd: int) -> list[str]:
    try:
        return os.listdir(fd)
    except OSError:
        return []


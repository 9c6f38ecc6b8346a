"""Bind mounts that a pod cannot redirect: what Docker is given for subPath and hostPath mounts.

A subPath names a path inside a volume the pod can write to, so by the time Docker mounts it,
any component may have become a symlink to ``/`` (the kubelet's CVE-2017-1002101). The kubelet's
fix, done here too: open the path one component at a time without following symlinks
(``host_fs``), bind-mount the opened directory or file onto a staging path below the pod's
root-only directory, and hand Docker the staging path. The staging mount holds the inode that
was opened, so swapping the path afterwards changes nothing: not for this container, and not
when Docker restarts it under its restart policy, because Docker mounts the staging path again.
Every container creation (re-creations included) pins anew, so what it gets is resolved then.
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat
from pathlib import Path

from . import host_fs

_MS_BIND = 4096
_MNT_DETACH = 2
_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                        ctypes.c_void_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]


class PinError(OSError):
    """A mount that cannot be pinned; nothing was mounted."""


def pin(root: Path, source: Path, staging_root: Path, target: Path) -> None:
    """Bind ``source`` (below ``root``, reached without symlinks) onto ``target`` (below
    ``staging_root``), replacing whatever was pinned there before."""
    try:
        rel = host_fs.relative_to_root(source, root)
        with host_fs.open_entry(root, rel) as fd:
            is_dir = stat.S_ISDIR(os.fstat(fd).st_mode)
            _unmount(target)
            _prepare_target(staging_root, target, is_dir)
            _bind(f"/proc/self/fd/{fd}", target)
    except host_fs.UnsafePath as exc:
        raise PinError(exc.errno or errno.ELOOP, str(exc)) from None
    except OSError as exc:
        hint = "; the sidecar needs CAP_SYS_ADMIN (root) to pin mounts" if \
            exc.errno in (errno.EPERM, errno.EACCES) else ""
        raise PinError(exc.errno or errno.EIO,
                       f"cannot pin {source} for the container: {exc.strerror or exc}{hint}"
                       ) from None


def unpin_below(path: Path) -> list[str]:
    """Detach every mount at or below ``path`` (deepest first); returns those still there."""
    for point in sorted(host_fs.mounts_below(path), key=len, reverse=True):
        _libc.umount2(os.fsencode(point), _MNT_DETACH)
    return host_fs.mounts_below(path)


def _prepare_target(staging_root: Path, target: Path, is_dir: bool) -> None:
    rel = host_fs.relative_to_root(target, staging_root)
    existing = host_fs.stat_entry(staging_root, rel)
    if existing is not None and stat.S_ISDIR(existing.st_mode) != is_dir:
        host_fs.remove_tree(staging_root, target)
    if is_dir:
        host_fs.ensure_dir(staging_root, target, 0o700, None, None)
    else:
        host_fs.create_file(staging_root, target, 0o600)


def _bind(source: str, target: Path) -> None:
    if _libc.mount(source.encode(), os.fsencode(target), None, _MS_BIND, None) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


def _unmount(target: Path) -> None:
    while host_fs.mounts_below(target) and str(target) in host_fs.mounts_below(target):
        if _libc.umount2(os.fsencode(target), _MNT_DETACH) != 0:
            code = ctypes.get_errno()
            raise OSError(code, f"cannot unmount {target}: {os.strerror(code)}")

"""The host filesystem as the sidecar changes it: below a trusted root, never through a symlink.

Pods can write into their volumes (emptyDirs, claims, writable hostPaths), so any path below a
volume may have been replaced by a symlink pointing anywhere on the host. Every creation,
chmod, chown, write and open the sidecar makes below its data root (or a hostPath prefix) goes
through here: the path is walked one component at a time from the trusted root with
``openat(O_NOFOLLOW)``, so a symlink or a non-directory on the way is refused instead of
followed, and the final operation acts on the opened file descriptor, not on a path that could
be swapped in between (CVE-2017-1002101 is the kubelet's version of this bug).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from interlink_common.identity import check_uid

_DIR = os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_PATH = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC


PODS, CLAIMS = "pods", "claims"


class UnsafePath(OSError):
    """A path that leaves its root, or crosses a symlink or a non-directory on the way."""


def pod_dir(data_root: Path, uid: str) -> Path:
    """``<data root>/pods/<uid>``: the only way a pod's UID becomes a host path. The UID must
    be a UUID (``check_uid``), so it is one plain component below the data root."""
    return data_root / PODS / check_uid(uid)


def claims_root(data_root: Path) -> Path:
    return data_root / CLAIMS


def prepare_data_root(data_root: Path) -> None:
    """The data root's own directories, root-only: a bind mount does not need its host
    parents to be traversable, and no other host user should reach a pod's files."""
    data_root.mkdir(parents=True, exist_ok=True)
    for name in (PODS, CLAIMS):
        ensure_dir(data_root, data_root / name, 0o700, None, None)


def relative_to_root(path: Path, root: Path) -> PurePosixPath:
    """``path`` below ``root`` as relative parts, refusing '..' and anything outside."""
    if ".." in PurePosixPath(path).parts:
        raise UnsafePath(errno.EXDEV, f"{path} contains '..'")
    try:
        rel = PurePosixPath(os.path.normpath(path)).relative_to(os.path.normpath(root))
    except ValueError:
        raise UnsafePath(errno.EXDEV, f"{path} is not below {root}") from None
    if ".." in rel.parts:
        raise UnsafePath(errno.EXDEV, f"{path} leaves {root}")
    return rel


@contextlib.contextmanager
def open_dir(root: Path, rel: PurePosixPath | str, *, create_mode: int | None = None,
             path_only: bool = False) -> Iterator[int]:
    """A file descriptor for the directory ``root/rel``, walked without following symlinks.

    With ``create_mode``, missing components are created (mode ``create_mode``, owned by the
    sidecar). ``path_only`` gives an ``O_PATH`` descriptor (enough to open beneath or to mount).
    """
    # The root is the operator's (data root, hostPath prefix): it may itself be a symlink.
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in PurePosixPath(rel).parts:
            if part in ("", ".", ".."):
                raise UnsafePath(errno.EXDEV, f"{root}/{rel}: component {part!r} is not allowed")
            nxt = _step(fd, part, root, rel, create_mode)
            os.close(fd)
            fd = nxt
        if path_only:
            yield fd
        else:
            # Re-open the final directory readable, so that fchmod/fchown work on it.
            with contextlib.closing(_Fd(os.open(".", os.O_RDONLY | os.O_DIRECTORY,
                                                dir_fd=fd))) as real:
                yield real.fd
    finally:
        os.close(fd)


class _Fd:
    def __init__(self, fd: int) -> None:
        self.fd = fd

    def close(self) -> None:
        os.close(self.fd)


def _step(fd: int, part: str, root: Path, rel: PurePosixPath | str,
          create_mode: int | None) -> int:
    """Open (or create) one directory component below ``fd``, without following a symlink."""
    try:
        try:
            nxt = os.open(part, _DIR | os.O_PATH, dir_fd=fd)
        except FileNotFoundError:
            if create_mode is None:
                raise
            with contextlib.suppress(FileExistsError):
                os.mkdir(part, create_mode, dir_fd=fd)
            nxt = os.open(part, _DIR | os.O_PATH, dir_fd=fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise UnsafePath(exc.errno, f"{root}/{rel}: {part!r} is a symlink or not a "
                             "directory; the sidecar does not follow symlinks inside volumes "
                             "and host paths") from None
        raise
    return nxt


@contextlib.contextmanager
def open_entry(root: Path, rel: PurePosixPath | str) -> Iterator[int]:
    """An ``O_PATH`` descriptor for ``root/rel`` (file, directory, socket), no symlink
    followed anywhere; the final entry must not be a symlink either."""
    rel = PurePosixPath(rel)
    if not rel.parts:
        with open_dir(root, rel, path_only=True) as fd:
            yield fd
        return
    with open_dir(root, rel.parent, path_only=True) as parent:
        try:
            fd = os.open(rel.name, _PATH, dir_fd=parent)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise UnsafePath(exc.errno, f"{root}/{rel} is a symlink; the sidecar does not "
                                 "follow symlinks inside volumes and host paths") from None
            raise
        try:
            # O_PATH|O_NOFOLLOW opens a final symlink itself rather than failing.
            if stat.S_ISLNK(os.fstat(fd).st_mode):
                raise UnsafePath(errno.ELOOP, f"{root}/{rel} is a symlink; the sidecar does not "
                                 "follow symlinks inside volumes and host paths")
            yield fd
        finally:
            os.close(fd)


def ensure_dir(root: Path, path: Path, mode: int, uid: int | None, gid: int | None, *,
               keep_existing: bool = False) -> None:
    """Create ``path`` below ``root`` (parents owned by root) and give it ``mode`` and owners;
    with ``keep_existing`` an existing directory keeps its owner and mode, and only gains the
    group (fsGroup) with group rwx and setgid."""
    rel = relative_to_root(path, root)
    with open_dir(root, rel.parent, create_mode=0o755, path_only=True) as parent:
        existed = True
        try:
            os.mkdir(rel.name, 0o700, dir_fd=parent)
            existed = False
        except FileExistsError:
            pass
        fd = _open_child_dir(parent, rel.name, root, rel)
        try:
            if existed and keep_existing:
                if gid is not None:
                    current = os.fstat(fd).st_mode & 0o7777
                    os.fchown(fd, -1, gid)
                    os.fchmod(fd, current | (mode & 0o2070))
                return
            # chown before chmod: chown may clear set-id bits.
            if uid is not None or gid is not None:
                os.fchown(fd, -1 if uid is None else uid, -1 if gid is None else gid)
            os.fchmod(fd, mode)
        finally:
            os.close(fd)


def _open_child_dir(parent: int, name: str, root: Path, rel: PurePosixPath) -> int:
    """Open an existing directory; a symlink is refused (``UnsafePath``), another kind of file
    is ``NotADirectoryError`` (a subPath may name a file)."""
    try:
        return os.open(name, _DIR | os.O_RDONLY, dir_fd=parent)
    except OSError as exc:
        # O_NOFOLLOW|O_DIRECTORY on a symlink may say ENOTDIR as well as ELOOP.
        if exc.errno == errno.ELOOP or exc.errno == errno.ENOTDIR and stat.S_ISLNK(
                os.stat(name, dir_fd=parent, follow_symlinks=False).st_mode):
            raise UnsafePath(exc.errno, f"{root}/{rel} is a symlink; the sidecar does not "
                             "follow symlinks inside volumes and host paths") from None
        if exc.errno == errno.ENOTDIR:
            raise NotADirectoryError(exc.errno, f"{root}/{rel} is not a directory") from None
        raise


def write_file(root: Path, path: Path, content: bytes, mode: int, uid: int | None,
               gid: int | None) -> None:
    """Write ``path`` below ``root`` through a temporary file and a rename in the same opened
    directory, so that a reader never sees half a file and no symlink is written through."""
    rel = relative_to_root(path, root)
    with open_dir(root, rel.parent, create_mode=0o755, path_only=True) as parent:
        tmp = f".{rel.name}.{os.getpid()}.{id(content):x}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600, dir_fd=parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(content)
                if uid is not None or gid is not None:
                    os.fchown(fh.fileno(), -1 if uid is None else uid, -1 if gid is None else gid)
                os.fchmod(fh.fileno(), mode)
            os.rename(tmp, rel.name, src_dir_fd=parent, dst_dir_fd=parent)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp, dir_fd=parent)
            raise


def read_file(root: Path, path: Path, limit: int) -> bytes:
    """At most ``limit`` bytes of the regular file ``path`` below ``root``, reached without
    following a symlink (and without blocking on a FIFO planted there)."""
    rel = relative_to_root(path, root)
    with open_dir(root, rel.parent, path_only=True) as parent:
        fd = os.open(rel.name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                     dir_fd=parent)
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise UnsafePath(errno.EINVAL, f"{path} is not a regular file")
            return f.read(limit)


def create_file(root: Path, path: Path, mode: int) -> None:
    """An empty file at ``path`` below ``root`` unless one exists; never through a symlink."""
    rel = relative_to_root(path, root)
    with open_dir(root, rel.parent, create_mode=0o755, path_only=True) as parent:
        try:
            fd = os.open(rel.name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                         | os.O_CLOEXEC, mode, dir_fd=parent)
        except FileExistsError:
            return
        try:
            os.fchmod(fd, mode)
        finally:
            os.close(fd)


def stat_entry(root: Path, rel: PurePosixPath | str) -> os.stat_result | None:
    """``lstat`` of ``root/rel`` reached without following symlinks; None when missing."""
    try:
        with open_entry(root, rel) as fd:
            return os.fstat(fd)
    except FileNotFoundError:
        return None


def remove_tree(root: Path, path: Path) -> None:
    """Remove ``path`` below ``root`` and everything in it; a no-op when gone.

    Walks by file descriptor with an explicit stack (a tenant can nest directories deeper than
    Python recurses), never follows a symlink, and refuses to enter another mount: a bind
    mount of a claim or a host path must never have its contents deleted with a pod, even one
    made after the check for mounts below ``path``.
    """
    rel = relative_to_root(path, root)
    if not rel.parts:
        raise UnsafePath(errno.EINVAL, f"refusing to remove the root {root} itself")
    mounted = mounts_below(path)
    if mounted:
        raise UnsafePath(errno.EBUSY, f"{path} still has mounts below it ({', '.join(mounted)}); "
                         "not removing it")
    try:
        with open_dir(root, rel.parent, path_only=True) as parent:
            try:
                st = os.stat(rel.name, dir_fd=parent, follow_symlinks=False)
            except FileNotFoundError:
                return
            if not stat.S_ISDIR(st.st_mode):
                os.unlink(rel.name, dir_fd=parent)
                return
            top = _open_child_dir(parent, rel.name, root, rel)
            try:
                if mount_id(top) != mount_id(parent):
                    raise UnsafePath(errno.EBUSY, f"{path} is a mount point; not removing it")
                _empty_dir(top, path)
            finally:
                os.close(top)
            os.rmdir(rel.name, dir_fd=parent)
    except FileNotFoundError:
        return


def _empty_dir(top: int, path: Path) -> None:
    """Delete everything inside the opened directory ``top``, depth first, without recursion."""
    mount = mount_id(top)
    # Each frame: an open directory, the names left to look at, and its name in its parent.
    stack: list[tuple[int, list[str], str]] = [(top, os.listdir(top), "")]
    try:
        while stack:
            fd, names, name_in_parent = stack[-1]
            if not names:
                stack.pop()
                if stack:  # ``top`` itself is removed by the caller
                    os.close(fd)
                    os.rmdir(name_in_parent, dir_fd=stack[-1][0])
                continue
            name = names.pop()
            try:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            if not stat.S_ISDIR(st.st_mode):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(name, dir_fd=fd)
                continue
            child = os.open(name, _DIR | os.O_RDONLY, dir_fd=fd)
            if mount_id(child) != mount:
                os.close(child)
                raise UnsafePath(errno.EBUSY, f"{path}: {name!r} is a mount point; not "
                                 "removing what is below it")
            stack.append((child, os.listdir(child), name))
    finally:
        for fd, _, _ in stack[1:]:
            os.close(fd)


def mount_id(fd: int) -> int:
    """The mount an open file is on (bind mounts of one filesystem share ``st_dev``)."""
    with open(f"/proc/self/fdinfo/{fd}", encoding="ascii") as f:
        for line in f:
            if line.startswith("mnt_id:"):
                return int(line.split()[1])
    raise UnsafePath(errno.EIO, "cannot tell which mount a directory is on (/proc unreadable)")


def mounts_below(path: Path) -> list[str]:
    """Mount points at or below ``path``, from this process's mount table."""
    prefix = os.path.normpath(path)
    found = []
    # No suppression: an unreadable mount table must stop a removal, not look empty.
    with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
        for line in f:
            fields = line.split()
            if len(fields) < 5:
                continue
            point = _unescape(fields[4])
            if point == prefix or point.startswith(prefix.rstrip("/") + "/"):
                found.append(point)
    return found


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash as octal escapes."""
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1:i + 4].isdigit() and len(field[i + 1:i + 4]) == 3:
            out.append(chr(int(field[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)

"""Another user of the host, for the attacks that come from beside the services, not through them."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

NOBODY = 65534

# Run by the system Python as the other user: connect, send one request, print the status line.
_CLIENT = """
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    s.connect(sys.argv[1])
except OSError as exc:
    print("refused", exc.errno)
    sys.exit(0)
s.sendall(b"GET /healthz HTTP/1.1\\r\\nHost: localhost\\r\\n\\r\\n")
print(s.recv(100).split(b"\\r\\n")[0].decode())
"""


def socket_dir() -> Path:
    """A directory every host user may enter (pytest's own tmp dirs are 0700), so that only the
    socket's own mode decides who connects."""
    path = Path(tempfile.mkdtemp(prefix="il-sock-", dir="/tmp"))
    os.chmod(path, 0o755)
    return path


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    """A ``socket_dir`` for one test, removed after it."""
    path = socket_dir()
    yield path
    shutil.rmtree(path, ignore_errors=True)


def run_as(uid: int, gid: int, *command: str) -> subprocess.CompletedProcess[str]:
    """Run ``command`` as host user ``uid:gid`` with no other groups."""
    return subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups",
                           *command], capture_output=True, text=True, timeout=30)


def connect_as(path: str | Path, *, uid: int = NOBODY, gid: int = NOBODY) -> str:
    """Connect to a unix socket as ``uid:gid`` with no other groups; "refused <errno>" or the
    HTTP status line the server answered."""
    out = subprocess.run(["setpriv", "--reuid", str(uid), "--regid", str(gid), "--clear-groups",
                          "/usr/bin/python3", "-c", _CLIENT, str(path)],
                         capture_output=True, text=True, timeout=30, check=True)
    return out.stdout.strip()

"""Telling systemd (``Type=notify``) that a service is ready, and why it is not yet.

The protocol is one datagram to ``$NOTIFY_SOCKET`` (a path, or ``@name`` in the abstract
namespace); without the variable (not under systemd, or another ``Type=``) nothing is sent.
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger("interlink.serve")


def notify(*fields: str) -> bool:
    """Send ``READY=1``, ``STATUS=...`` and the like; True when systemd was told."""
    address = os.environ.get("NOTIFY_SOCKET", "")
    if not address:
        return False
    target = "\0" + address[1:] if address.startswith("@") else address
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.sendto("\n".join(fields).encode(), target)
    except OSError as exc:
        log.warning("cannot notify systemd at %s: %s", address, exc)
        return False
    return True

"""``Type=notify``: both services tell systemd they are ready only when they can serve, the API
once its plugin answers (saying meanwhile why it waits), the sidecar once its recovery is done
and it listens."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import httpx

from procs import start_api, start_fake_plugin
from sidecars import start_test_sidecar


class NotifySocket:
    """What systemd listens on: a datagram socket; collects what the service sends."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.2)
        self.messages: list[str] = []

    def wait_for(self, field: str, timeout: float = 30) -> list[str]:
        """Until a message carries ``field`` (``READY=1``) or a field starting with it."""
        deadline = time.monotonic() + timeout
        while not any(f.startswith(field) for m in self.messages for f in m.split("\n")):
            assert time.monotonic() < deadline, f"no {field!r}; got {self.messages}"
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except socket.timeout:
                pass
        return self.messages

    def said(self, field: str) -> bool:
        return any(field in m.split("\n") for m in self.messages)

    def close(self) -> None:
        self.sock.close()


def test_the_api_is_ready_only_once_its_plugin_answers(tmp_path) -> None:
    notify = NotifySocket(tmp_path / "notify")
    plugin_socket = tmp_path / "plugin.sock"
    api = start_api(tmp_path, {"SidecarURL": f"unix://{plugin_socket}"},
                    env={"NOTIFY_SOCKET": notify.path})
    plugin = None
    try:
        # Serving already (health, documented errors), but not ready: systemd is told why.
        notify.wait_for("STATUS=not ready:")
        assert not notify.said("READY=1")
        assert str(plugin_socket) in notify.messages[0]
        with api.client() as c:
            assert c.get("/readyz").status_code == 503

        plugin = start_fake_plugin(tmp_path, uds=str(plugin_socket))
        notify.wait_for("READY=1")
        with api.client() as c:
            assert c.get("/readyz").status_code == 200
    finally:
        api.stop()
        if plugin is not None:
            plugin.stop()
    notify.close()


def test_the_sidecar_is_ready_once_recovered_and_listening(docker_client, tmp_path) -> None:
    notify = NotifySocket(tmp_path / "notify")
    sc = start_test_sidecar(tmp_path, docker_client, wait=False,
                            env={"NOTIFY_SOCKET": notify.path})
    try:
        notify.wait_for("READY=1")
        # At the moment it says so, it answers.
        assert httpx.get(f"{sc.proc.base}/healthz", timeout=5).status_code == 200
        assert notify.said("STATUS=ready")
        sc.proc.stop()
        notify.wait_for("STOPPING=1")
    finally:
        sc.proc.stop()
        sc.cleanup()
        notify.close()

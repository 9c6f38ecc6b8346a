"""Starting the real server processes for tests: ephemeral ports, unix sockets, clean stops."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env_for_children(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    for key in ("INTERLINKURL", "INTERLINKPORT", "SIDECARURL", "SIDECARPORT",
                "INTERLINKCONFIGPATH"):
        env.pop(key, None)
    env.update(extra)
    return env


def write_config(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


class Proc:
    """A child process serving HTTP on ``base`` (``http://127.0.0.1:N`` or ``unix://path``)."""

    def __init__(self, args: list[str], base: str, log_path: Path, env: dict[str, str] | None = None):
        self.base = base
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.popen = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT,
                                      env=env or env_for_children(), cwd=ROOT,
                                      start_new_session=True)

    def client(self, **kwargs: Any) -> httpx.Client:
        if self.base.startswith("unix://"):
            transport = httpx.HTTPTransport(uds=self.base[len("unix://"):])
            return httpx.Client(base_url="http://local", transport=transport, **kwargs)
        return httpx.Client(base_url=self.base, **kwargs)

    def wait_ready(self, path: str = "/healthz", timeout: float = 20.0) -> "Proc":
        deadline = time.monotonic() + timeout
        with self.client(timeout=1.0) as c:
            while time.monotonic() < deadline:
                if self.popen.poll() is not None:
                    raise RuntimeError(f"process exited with {self.popen.returncode}:\n{self.output()}")
                try:
                    if c.get(path).status_code < 500:
                        return self
                except httpx.HTTPError:
                    pass
                time.sleep(0.05)
        raise RuntimeError(f"process not ready after {timeout}s:\n{self.output()}")

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self._log.close()
        return self.popen.returncode


def start_fake_plugin(tmp: Path, uds: str | None = None) -> Proc:
    script = str(ROOT / "tests" / "fake_plugin.py")
    if uds:
        return Proc([sys.executable, script, "--uds", uds], f"unix://{uds}",
                    tmp / "fake_plugin.log").wait_ready("/_requests")
    port = free_port()
    return Proc([sys.executable, script, "--port", str(port)], f"http://127.0.0.1:{port}",
                tmp / "fake_plugin.log").wait_ready("/_requests")


def start_api(tmp: Path, config: dict[str, Any], *, name: str = "api",
              extra_args: list[str] | None = None, wait: bool = True,
              env: dict[str, str] | None = None) -> Proc:
    """Start ``interlink-api`` with ``config``; listens on a fresh loopback port unless the config
    says otherwise."""
    config = dict(config)
    if "InterlinkAddress" not in config and "InterlinkURL" not in config:
        config["InterlinkAddress"] = "http://127.0.0.1"
    if "InterlinkPort" not in config and not str(config.get("InterlinkAddress", "")).startswith("unix://"):
        config["InterlinkPort"] = free_port()
    path = write_config(tmp / f"{name}.yaml", config)
    address = str(config.get("InterlinkAddress") or config.get("InterlinkURL"))
    if address.startswith("unix://"):
        base = address
    else:
        scheme = "https" if address.startswith("https") else "http"
        base = f"{scheme}://127.0.0.1:{config['InterlinkPort']}"
    proc = Proc([sys.executable, "-m", "interlink_api", "--config", str(path),
                 *(extra_args or [])], base, tmp / f"{name}.log",
                env=env_for_children(**(env or {})))
    return proc.wait_ready() if wait else proc


def start_oidc_api(tmp: Path, plugin_base: str, issuer_url: str, **kwargs: Any) -> Proc:
    """The API server on loopback as a node runs it: token checks against ``issuer_url``
    (audience "users", group "/interlink" in "wlcg.groups") in front of the plugin at
    ``plugin_base`` (``http://127.0.0.1:N``)."""
    host, port = plugin_base.rsplit(":", 1)
    return start_api(tmp, {
        "InterlinkURL": "http://127.0.0.1", "InterlinkPort": free_port(),
        "SidecarURL": host, "SidecarPort": int(port),
        "OIDC": {"Issuer": issuer_url, "Audience": "users", "GroupsClaim": "wlcg.groups",
                 "RequiredGroup": "/interlink"}}, **kwargs)


def start_sidecar(tmp: Path, *, instance: str, data_root: Path | None = None,
                  policy: dict[str, Any] | None = None, port: int | None = None,
                  name: str = "sidecar", wait: bool = True,
                  env: dict[str, str] | None = None) -> Proc:
    """Start ``docker-sidecar`` on a fresh loopback port with its own Docker label instance."""
    port = port or free_port()
    config = {
        "SidecarURL": "http://127.0.0.1", "SidecarPort": port,
        "DataRootFolder": str(data_root or tmp / "data"),
        "Sidecar": {"InfraImage": "interlink-test/pause:1", "Instance": instance,
                    "BackoffInitialSeconds": 0.3, "BackoffMaxSeconds": 1.0,
                    **(policy or {})},
    }
    path = write_config(tmp / f"{name}.yaml", config)
    proc = Proc([sys.executable, "-m", "docker_sidecar", "--config", str(path)],
                f"http://127.0.0.1:{port}", tmp / f"{name}.log", env=env_for_children(**(env or {})))
    return proc.wait_ready() if wait else proc

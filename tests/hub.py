"""A real JupyterHub for tests, and a browser's way of using it.

The hub is PyPI's ``jupyterhub`` (from the test extras) with npm's ``configurable-http-proxy``
in front, installed on first use into a cache (``$INTERLINK_TEST_NPM_CACHE``, default
/var/cache/interlink-test-npm). ``Browser`` does what a person's browser does: the login form
with its XSRF token, the spawn form, the progress event stream, cookies throughout.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from procs import ROOT, env_for_children, free_port

CHP_VERSION = "5.3.0"
PASSWORD = "the-test-password"


def chp_command() -> str:
    """configurable-http-proxy, installed from the npm registry when missing (and Node.js
    with it, from Debian, when this is a Debian machine run as root)."""
    cache = Path(os.environ.get("INTERLINK_TEST_NPM_CACHE", "/var/cache/interlink-test-npm"))
    program = cache / "node_modules" / ".bin" / "configurable-http-proxy"
    stamp = cache / f".chp-{CHP_VERSION}"
    if program.exists() and stamp.exists():
        return str(program)
    if shutil.which("npm") is None:
        if os.geteuid() != 0 or shutil.which("apt-get") is None:
            raise RuntimeError("the JupyterHub tests need Node.js and npm (for "
                               "configurable-http-proxy); install them, e.g. Debian's nodejs "
                               "and npm packages")
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "nodejs", "npm"], check=True,
                       env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
    cache.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["npm", "install", "--prefix", str(cache), "--no-audit", "--no-fund",
                           "--loglevel=error", f"configurable-http-proxy@{CHP_VERSION}"],
                          capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"npm could not install configurable-http-proxy@{CHP_VERSION} (is "
                           f"the npm registry reachable?):\n{done.stderr[-2000:]}")
    stamp.touch()
    return str(program)


def docker_bridge_address(interface: str = "docker0") -> str:
    """The host's address on Docker's default bridge: where a pod reaches the hub. Asked of
    the kernel (SIOCGIFADDR), since a minimal Debian may have no `ip` command."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            answer = fcntl.ioctl(s.fileno(), 0x8915, struct.pack("256s", interface.encode()))
        except OSError as exc:
            raise RuntimeError(f"no IPv4 address on {interface} ({exc}): is dockerd running "
                               "with its default bridge?") from None
    return socket.inet_ntoa(answer[20:24])


class Hub:
    """``jupyterhub`` with ``InterLinkSpawner``, a dummy login and the proxy, on loopback."""

    def __init__(self, tmp: Path, spawner_config: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = tmp / "hub.log"
        hub_ip = docker_bridge_address()
        config = tmp / "jupyterhub_config.py"
        config.write_text(f"""
c = get_config()  # noqa
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = {self.port}
# The notebook calls the hub's API from inside its pod: the hub listens on the bridge.
c.JupyterHub.hub_ip = {hub_ip!r}
c.JupyterHub.hub_port = {free_port()}
c.ConfigurableHTTPProxy.command = [{chp_command()!r}]
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{free_port()}"
c.JupyterHub.db_url = "sqlite:///{tmp}/hub.sqlite"
c.JupyterHub.cookie_secret_file = "{tmp}/cookie_secret"
c.JupyterHub.pid_file = "{tmp}/hub.pid"
c.JupyterHub.authenticator_class = "dummy"
c.DummyAuthenticator.password = {PASSWORD!r}
c.Authenticator.allow_all = True
c.JupyterHub.spawner_class = "interlink"
c.Spawner.http_timeout = 90
c.Spawner.poll_interval = 2  # how soon the hub notices a server that ended by itself
c.Spawner.start_timeout = 180
{spawner_config}
""")
        self._log = open(self.log_path, "wb")
        self.popen = subprocess.Popen([sys.executable, "-m", "jupyterhub", "-f", str(config)],
                                      stdout=self._log, stderr=subprocess.STDOUT, cwd=tmp,
                                      env=env_for_children(), start_new_session=True)
        self._wait_up()

    def _wait_up(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise RuntimeError(f"jupyterhub exited:\n{self.output()[-4000:]}")
            try:
                if httpx.get(f"{self.url}/hub/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"jupyterhub did not answer in {timeout} s:\n{self.output()[-4000:]}")

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(30)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self._log.close()


class Browser:
    """One person's browser on the hub's public URL: cookies kept, redirects followed."""

    def __init__(self, hub: Hub, name: str) -> None:
        self.hub = hub
        self.name = name
        self.http = httpx.Client(base_url=hub.url, follow_redirects=True, timeout=60)

    def close(self) -> None:
        self.http.close()

    def _xsrf(self, path: str = "/hub/") -> str:
        for cookie in self.http.cookies.jar:
            if cookie.name == "_xsrf" and path.startswith(cookie.path or "/"):
                return cookie.value
        raise AssertionError(f"no _xsrf cookie for {path}: {list(self.http.cookies.jar)}")

    def login(self) -> None:
        self.http.get("/hub/login").raise_for_status()
        r = self.http.post("/hub/login", data={"username": self.name, "password": PASSWORD,
                                                "_xsrf": self._xsrf()})
        r.raise_for_status()
        assert any(c.name.startswith("jupyterhub-session") for c in self.http.cookies.jar), r.url

    def spawn(self, profile: str) -> httpx.Response:
        """Submit the spawn form; the answer is the spawn-pending page (or the server)."""
        self.http.get(f"/hub/spawn/{self.name}")
        return self.http.post(f"/hub/spawn/{self.name}",
                              data={"profile": profile, "_xsrf": self._xsrf()},
                              follow_redirects=False)

    def progress(self, timeout: float = 180,
                 events: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
        """The spawn's progress events, read as the spawn-pending page's EventSource does,
        until the hub says the server is ready or the spawn failed; each is appended to
        ``events`` as it comes (for a reader on another thread)."""
        events = [] if events is None else events
        with self.http.stream("GET", f"/hub/api/users/{self.name}/server/progress",
                              params={"_xsrf": self._xsrf()},
                              headers={"Accept": "text/event-stream"},
                              timeout=httpx.Timeout(timeout, connect=10)) as r:
            assert r.status_code == 200, r.read()
            for line in r.iter_lines():
                if line.startswith("data:"):
                    event = json.loads(line[5:])
                    events.append(event)
                    if event.get("ready") or event.get("failed"):
                        break
        return events

    def stop_server(self) -> None:
        r = self.http.delete(f"/hub/api/users/{self.name}/server",
                             headers={"X-XSRFToken": self._xsrf()})
        assert r.status_code in (202, 204), (r.status_code, r.text)
        deadline = time.monotonic() + 60
        while self.server_state() is not None:
            assert time.monotonic() < deadline, "the hub still lists the server"
            time.sleep(0.5)

    def server_state(self) -> dict[str, Any] | None:
        r = self.http.get(f"/hub/api/users/{self.name}", headers={"X-XSRFToken": self._xsrf()})
        r.raise_for_status()
        return r.json().get("servers", {}).get("")

    # --- the notebook, through the hub's proxy ------------------------------------------------

    def open_notebook(self) -> None:
        """What following the hub's redirect to the server does: the server's login sends the
        browser through the hub's OAuth authorization and back, ending with a cookie of the
        server's own."""
        r = self.http.get(f"/user/{self.name}/files/hello.txt", headers={"Accept": "text/html"})
        chain = [str(h.url) for h in r.history] + [str(r.url)]
        assert any("/hub/api/oauth2/authorize" in u for u in chain), (chain, r.status_code, r.text[:800])
        r = self.http.get(f"/user/{self.name}/api/contents")
        assert r.status_code == 200, (r.status_code, r.text[:500], chain)

    def shut_down_from_inside(self) -> None:
        """The notebook's own "Shut Down" (File menu): the server exits by itself."""
        r = self.http.post(f"/user/{self.name}/api/shutdown",
                           headers={"X-XSRFToken": self._xsrf(f"/user/{self.name}/")})
        assert r.status_code in (200, 202, 204), (r.status_code, r.text[:300])

    def put_file(self, path: str, text: str) -> httpx.Response:
        return self.http.put(f"/user/{self.name}/api/contents/{path}",
                             json={"type": "file", "format": "text", "content": text},
                             headers={"X-XSRFToken": self._xsrf(f"/user/{self.name}/")})

    def get_file(self, path: str) -> httpx.Response:
        return self.http.get(f"/user/{self.name}/api/contents/{path}",
                             params={"content": "1", "format": "text", "type": "file"})


__all__ = ["Browser", "Hub", "ROOT", "chp_command", "docker_bridge_address"]

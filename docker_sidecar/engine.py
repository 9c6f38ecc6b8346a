"""A thin, explicit client over the Docker Engine API (docker-py's low-level ``APIClient``).

Every call is synchronous and timed; callers run them in worker threads. Nothing here knows
about pods beyond the arguments it is given.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import docker
from docker.errors import APIError, DockerException, ImageNotFound, NotFound

from . import labels as L

Observe = Callable[[str, float, bool], None]


class EngineError(Exception):
    """A Docker call failed; the message is Docker's own explanation."""


def explain(exc: Exception) -> str:
    if isinstance(exc, APIError):
        return str(exc.explanation or exc)
    return str(exc) or type(exc).__name__


class Engine:
    def __init__(self, api: docker.APIClient, instance: str = "default",
                 observe: Observe | None = None) -> None:
        self.api = api
        self.instance = instance
        self._observe = observe

    @classmethod
    def from_env(cls, instance: str = "default", observe: Observe | None = None) -> "Engine":
        """Connect as the ``docker`` CLI would: ``DOCKER_HOST`` and friends, else the socket."""
        client = docker.from_env(timeout=120, max_pool_size=64)
        return cls(client.api, instance, observe)

    def _call(self, op: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        ok = False
        try:
            result = fn(*args, **kwargs)
            ok = True
            return result
        finally:
            if self._observe:
                self._observe(op, time.perf_counter() - start, ok)

    # --- engine -----------------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        return self._call("info", self.api.info)

    # --- images -----------------------------------------------------------------------------

    def image_id(self, ref: str) -> str | None:
        try:
            return self._call("image_inspect", self.api.inspect_image, ref)["Id"]
        except (ImageNotFound, NotFound):
            return None

    def image_user(self, ref: str) -> str | None:
        """The user the image runs as (``Config.User``, "" for root); None without the image."""
        try:
            return self._call("image_inspect", self.api.inspect_image, ref)["Config"].get(
                "User") or ""
        except (ImageNotFound, NotFound):
            return None

    def pull(self, ref: str, auth: dict[str, str] | None = None) -> None:
        """Pull and raise ``EngineError`` with the registry's message on failure (errors arrive
        inside the progress stream, not as an HTTP status)."""
        repo, tag = _split_ref(ref)
        try:
            stream = self._call("pull", self.api.pull, repo, tag=tag, stream=True, decode=True,
                                auth_config=auth or None)
            for event in stream:
                if isinstance(event, dict) and event.get("error"):
                    raise EngineError(str(event["error"]).strip())
        except DockerException as exc:
            raise EngineError(explain(exc)) from None

    # --- containers -------------------------------------------------------------------------

    def create(self, args: dict[str, Any], host_config: dict[str, Any]) -> str:
        try:
            hc = self.api.create_host_config(**host_config)
            return self._call("create", self.api.create_container, host_config=hc, **args)["Id"]
        except DockerException as exc:
            raise EngineError(explain(exc)) from None

    def start(self, cid: str) -> None:
        try:
            self._call("start", self.api.start, cid)
        except DockerException as exc:
            raise EngineError(explain(exc)) from None

    def stop(self, cid: str, timeout: int) -> None:
        try:
            self._call("stop", self.api.stop, cid, timeout=timeout)
        except NotFound:
            pass
        except DockerException as exc:
            raise EngineError(explain(exc)) from None

    def restart(self, cid: str, timeout: int) -> None:
        try:
            self._call("restart", self.api.restart, cid, timeout=timeout)
        except DockerException as exc:
            raise EngineError(explain(exc)) from None

    def remove(self, cid: str) -> None:
        try:
            self._call("remove", self.api.remove_container, cid, force=True, v=True)
        except NotFound:
            pass
        except APIError as exc:
            if "already in progress" not in explain(exc):
                raise EngineError(explain(exc)) from None

    def inspect(self, cid: str) -> dict[str, Any] | None:
        try:
            return self._call("inspect", self.api.inspect_container, cid)
        except NotFound:
            return None

    def list_managed(self) -> list[dict[str, Any]]:
        """Summaries of every container this sidecar made (one call, however many pods)."""
        return self._call("list", self.api.containers, all=True,
                          filters={"label": f"{L.MANAGED}={self.instance}"})

    def exec(self, cid: str, cmd: list[str]) -> tuple[int, bytes]:
        exec_id = self._call("exec_create", self.api.exec_create, cid, cmd, stdout=True,
                             stderr=True)["Id"]
        output = self._call("exec_start", self.api.exec_start, exec_id)
        code = self.api.exec_inspect(exec_id).get("ExitCode")
        return (code if code is not None else -1), output

    def logs(self, cid: str, *, follow: bool, tail: int | None, timestamps: bool,
             since: float | None) -> Iterator[bytes]:
        kwargs: dict[str, Any] = {"stdout": True, "stderr": True, "stream": True,
                                  "follow": follow, "timestamps": timestamps,
                                  "tail": tail if tail else "all"}
        if since is not None:
            kwargs["since"] = since
        return self._call("logs", self.api.logs, cid, **kwargs)

    # --- volumes ----------------------------------------------------------------------------

    def create_tmpfs_volume(self, name: str, size_bytes: int | None,
                            labels: dict[str, str]) -> None:
        opts = {"type": "tmpfs", "device": "tmpfs"}
        if size_bytes:
            opts["o"] = f"size={size_bytes}"
        try:
            self._call("volume_create", self.api.create_volume, name, driver="local",
                       driver_opts=opts, labels=labels)
        except DockerException as exc:
            raise EngineError(explain(exc)) from None

    def remove_volume(self, name: str) -> None:
        try:
            self._call("volume_remove", self.api.remove_volume, name, force=True)
        except NotFound:
            pass

    def list_volumes(self, uid: str) -> list[str]:
        result = self._call("volume_list", self.api.volumes,
                            filters={"label": [f"{L.MANAGED}={self.instance}",
                                               f"{L.POD_UID}={uid}"]})
        return [v["Name"] for v in result.get("Volumes") or []]

    # --- events -----------------------------------------------------------------------------

    def events(self, since: float | None) -> Any:
        """Container events of managed containers, decoded; ``close()`` ends the stream."""
        return self.api.events(since=since, decode=True,
                               filters={"type": "container", "label": f"{L.MANAGED}={self.instance}"})


def _split_ref(ref: str) -> tuple[str, str | None]:
    if "@" in ref:
        return ref, None
    last = ref.rsplit("/", 1)[-1]
    if ":" in last:
        repo, tag = ref.rsplit(":", 1)
        return repo, tag
    return ref, "latest"

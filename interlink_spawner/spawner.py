"""``InterLinkSpawner``: a JupyterHub spawner that runs each server on an interLink node, for
hubs that have no Kubernetes cluster of their own.

The pod is KubeSpawner's own (``get_pod_manifest``, so profiles, resources, volumes and
security contexts mean what they mean on a z2jh hub); instead of the Kubernetes API it goes to
an interLink API server, as the current virtual kubelet sends it, through
``interlink_common.api_client``. The hub reaches the notebook on the node's address at a port
of its own: the notebook's ``containerPort`` published there (the sidecar's
``Sidecar.PublishPorts``), or the remote end of a tunnel the pod's companion opens
(``tunnel_command``). Ports come from ``port_range``, one per running server.
"""

from __future__ import annotations

import asyncio
import re
import shlex
import uuid
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import httpx
from jupyterhub.spawner import Spawner
from kubernetes_asyncio.client import ApiClient
from kubespawner import KubeSpawner
from tornado import web
from traitlets import Float, Int, Tuple, Unicode, default, validate

from interlink_common.api_client import APIError, APIUnreachable, InterLinkClient

from .pod_progress import describe, ended, is_ready, waiting_for_gpu
from .ports import PortBook, PortsExhausted, check_range

TUNNEL_ANNOTATION = "interlink.eu/wstunnel-client-commands"
NOTEBOOK_CONTAINER = "notebook"  # the name KubeSpawner gives the server's container
# The sidecar's refusal when a published port is already used on the node (by a pod of
# another hub, say): the spawner then tries the next port of its range.
PORT_CLASH = re.compile(r"node port (\d+) is already used")
MAX_PORT_TRIES = 10
LOG_TAIL_LINES = 20
CRASHES_TOLERATED = 2  # restarts of a crashing notebook before the spawn is failed
DELETE_TRIES = 3
# A user's log lines reach the hub's log and page: no terminal controls, no forged lines.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


class SpawnFailed(web.HTTPError):
    """The node refused the server, or its notebook ended before it was ready.

    An HTTPError, because JupyterHub relays those to the user's spawn page (anything else is
    shown as "Unhandled error"); ``jupyterhub_message`` is the text it shows.
    """

    def __init__(self, message: str) -> None:
        super().__init__(500, "%s", message)
        self.jupyterhub_message = message


class InterLinkSpawner(KubeSpawner):
    """Spawns KubeSpawner's pod on an interLink node and connects the hub to it."""

    interlink_url = Unicode(
        config=True,
        help="The interLink API server: http(s)://host:port, or unix:///path/to/socket.")
    interlink_token_file = Unicode(
        "", config=True,
        help="A file holding the bearer token for the API (OIDC), read on every call, so a "
             "refresher may replace it.")
    # Spawner.api_token is the hub's token for the notebook: this one has a name of its own.
    interlink_token = Unicode(
        "", config=True,
        help="The bearer token itself (prefer interlink_token_file, which can be kept fresh).")
    interlink_ca_file = Unicode(
        "", config=True, help="CA bundle that signed an https API server's certificate.")
    interlink_timeout = Float(30.0, config=True, help="Seconds one API call may take.")
    status_interval = Float(
        1.0, config=True, help="Seconds between status polls while a server starts.")
    node_address = Unicode(
        "", config=True,
        help="Where the hub reaches published ports: the node's address, as the sidecar's "
             "Sidecar.PublishAddress. Needed unless tunnel_command is set.")
    port_range = Tuple(
        Int(), Int(), default_value=(30000, 30999), config=True,
        help="Node ports handed out, one per running server (inclusive). With published "
             "ports it must lie within the sidecar's Sidecar.PublishPortRange.")
    tunnel_command = Unicode(
        "", config=True,
        help="Reach the notebook through a tunnel instead of a published port: the command "
             "the pod's companion runs (the sidecar's Sidecar.TunnelImage), sent as the "
             f"{TUNNEL_ANNOTATION} annotation. Fields: {{remote_port}} (from port_range), "
             "{port} (the notebook's), {pod_name}, {namespace}, {username}.")
    tunnel_connect_host = Unicode(
        "", config=True,
        help="Where the hub reaches the tunnel's remote ports (the tunnel server's host).")

    # Who holds which node port, shared by every server of this hub (whatever its range).
    ports: ClassVar[PortBook] = PortBook()

    @default("start_timeout")
    def _start_timeout_default(self) -> int:
        return 300  # as z2jh: an image pull or a wait in the GPU queue takes a while

    @validate("port_range")
    def _valid_range(self, proposal: dict[str, Any]) -> tuple[int, int]:
        first, last = proposal["value"]
        check_range(first, last)
        return first, last

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # KubeSpawner's constructor loads a Kubernetes client configuration, which a hub
        # without a cluster has none of: the names it derives are derived here the same way.
        Spawner.__init__(self, *args, **kwargs)
        if self.enable_user_namespaces:
            self.namespace = self._expand_user_properties(self.user_namespace_template)
        self.pod_name = self._expand_user_properties(self.pod_name_template)
        self.dns_name = self.dns_name_template.format(namespace=self.namespace,
                                                      name=self.pod_name)
        self.secret_name = self._expand_user_properties(self.secret_name_template)
        self.pvc_name = self._expand_user_properties(self.pvc_name_template)
        self._pvc_exists = True  # the node makes the claim's directory when a pod uses it
        if self.working_dir:
            self.working_dir = self._expand_user_properties(self.working_dir)
        if self.port == 0:
            self.port = 8888
        self._start_future: asyncio.Future[str] | None = None
        self._pod_ref: dict[str, Any] | None = None
        self._node_port: int | None = None
        self._messages: list[str] = []
        self._new_message = asyncio.Event()
        # Pods the node did not confirm deleting: saved with the state, deleted again later.
        self._leftovers: list[dict[str, str]] = []
        if self.interlink_token and self.interlink_token_file:
            raise ValueError("set c.InterLinkSpawner.interlink_token or interlink_token_file, "
                             "not both")
        # The seam for tests: httpx's transport under the API client (httpx.MockTransport).
        self.transport: httpx.AsyncBaseTransport | None = None

    # --- the pod ------------------------------------------------------------------------------

    @property
    def _tunnelled(self) -> bool:
        return bool(self.tunnel_command)

    @property
    def _owner(self) -> str:
        # The user's id, not their name: an admin may rename a user with a server running.
        return f"user-{self.user.id}/{self.name}"

    def _take_port(self, avoid: set[int]) -> int:
        return self.ports.take(self._owner, *self.port_range, avoid=avoid)

    def _release_port(self) -> None:
        self.ports.release(self._owner)
        self._node_port = None

    async def interlink_pod(self) -> dict[str, Any]:
        """KubeSpawner's pod as the VK would send it: a dict, with its namespace and a fresh
        uid, and the tunnel command when the notebook is reached through a tunnel."""
        async with ApiClient() as api:
            pod: dict[str, Any] = api.sanitize_for_serialization(await self.get_pod_manifest())
        meta = pod.setdefault("metadata", {})
        meta["namespace"] = self.namespace
        meta["uid"] = str(uuid.uuid4())
        if self._tunnelled:
            assert self._node_port is not None
            # The command runs under /bin/sh -c: every field is quoted, since a user's name
            # may hold anything the hub's authenticator lets through.
            fields = {k: shlex.quote(str(v)) for k, v in {
                "remote_port": self._node_port, "port": self.port, "pod_name": self.pod_name,
                "namespace": self.namespace, "username": self.user.name}.items()}
            try:
                command = self.tunnel_command.format(**fields)
            except (KeyError, IndexError, ValueError) as exc:
                raise ValueError(f"c.InterLinkSpawner.tunnel_command {self.tunnel_command!r} "
                                 f"cannot be filled in ({exc!r}); its fields are "
                                 f"{', '.join('{%s}' % f for f in fields)}") from None
            meta.setdefault("annotations", {})[TUNNEL_ANNOTATION] = command
        return pod

    def _client(self) -> InterLinkClient:
        if not self.interlink_url:
            raise ValueError("c.InterLinkSpawner.interlink_url is not set: give the interLink API "
                             "server's URL (http(s)://host:port or unix:///path)")
        return InterLinkClient(self.interlink_url, token=self.interlink_token or None,
                               token_file=self.interlink_token_file or None,
                               verify=self.interlink_ca_file or True, timeout=self.interlink_timeout,
                               transport=self.transport)

    def _url(self) -> str:
        host = self.tunnel_connect_host if self._tunnelled else self.node_address
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self._node_port}"

    # --- start --------------------------------------------------------------------------------

    def _emit(self, message: str) -> None:
        self.log.info("%s: %s", self._owner, message)
        self._messages.append(message)
        self._new_message.set()

    async def _start(self) -> str:
        """Send the pod, then wait until the node says the notebook runs; the hub's URL for it.
        Raises with the node's words when the pod is refused or its notebook ends."""
        self._messages = []
        # The profile the user chose, and its kubespawner_override, as KubeSpawner applies them.
        await self.load_user_options()
        if getattr(self, "internal_ssl", False):
            raise SpawnFailed("the hub's internal_ssl needs certificates in a Kubernetes "
                              "Secret, which InterLinkSpawner does not make; turn it off "
                              "(c.JupyterHub.internal_ssl = False)")
        if self._tunnelled and not self.tunnel_connect_host:
            raise ValueError("c.InterLinkSpawner.tunnel_connect_host is not set: give the host "
                             "where the hub reaches the tunnel's remote ports")
        if not self._tunnelled and not self.node_address:
            raise ValueError("c.InterLinkSpawner.node_address is not set: give the node's "
                             "address where its ports are published (the sidecar's "
                             "Sidecar.PublishAddress), or set tunnel_command")
        async with self._client() as client:
            await self._delete_leftovers(client)
            pod = await self._create(client)
            try:
                await self._wait_ready(client, pod)
            except BaseException:
                # Nothing half-made stays behind: a notebook that never came up is removed and
                # its port given back (the hub's poll then says "stopped", so no stop comes).
                await self._delete(client, now=True)
                self._release_port()
                raise
        self._emit(f"server ready at {self._url()}")
        return self._url()

    async def _create(self, client: InterLinkClient) -> dict[str, Any]:
        refused: set[int] = set()
        for _ in range(MAX_PORT_TRIES):
            try:
                self._node_port = self._take_port(refused)
            except PortsExhausted as exc:
                raise SpawnFailed(f"no node port is free for the server: {exc}") from None
            # The notebook listens on its node port: published, that is the node port of the
            # same number; tunnelled, it is harmless, and keeps a node that also publishes
            # ports from seeing two servers on one.
            self.port = self._node_port
            pod = await self.interlink_pod()
            meta = pod["metadata"]
            # The API's address is the admin's business, not shown on the user's page.
            self._emit(f"sending pod {meta['namespace']}/{meta['name']} to the interLink API")
            try:
                await client.create(pod)
            except APIError as exc:
                clash = PORT_CLASH.search(exc.message) if exc.status == 422 else None
                if clash and int(clash.group(1)) == self._node_port:
                    refused.add(self._node_port)
                    self._emit(f"port {self._node_port} is taken on the node; trying another")
                    continue
                self._release_port()
                raise SpawnFailed(_explain(exc)) from None
            self._pod_ref = {"metadata": {k: meta[k] for k in ("name", "namespace", "uid")}}
            self._emit(f"the node accepted the pod (port {self._node_port})")
            return pod
        self._release_port()
        raise SpawnFailed(f"the node refused {MAX_PORT_TRIES} ports in a row as taken "
                           f"({', '.join(map(str, sorted(refused)))}); is another hub using "
                           f"{self.port_range[0]}-{self.port_range[1]} on that node?")

    async def _wait_ready(self, client: InterLinkClient, pod: dict[str, Any]) -> None:
        shown: list[str] = []
        unreachable = False
        while True:
            try:
                status = await client.pod_status(pod)
            except APIUnreachable as exc:
                if not unreachable:
                    self.log.warning("%s: %s", self._owner, exc)
                    self._emit("the interLink API does not answer; retrying")
                unreachable = True
                await asyncio.sleep(self.status_interval)
                continue
            except APIError as exc:
                raise SpawnFailed(_explain(exc)) from None
            unreachable = False
            gpu = waiting_for_gpu(status)
            lines = [f"all GPUs are in use; {gpu}"] if gpu else describe(status)
            for line in lines:
                if line not in shown:
                    self._emit(line)
            shown = lines
            if is_ready(status, NOTEBOOK_CONTAINER):
                return
            end = ended(status, NOTEBOOK_CONTAINER)
            # Under OnFailure a crash is retried by the node; a notebook that keeps crashing
            # will not come up in time, so the user is told why now rather than at the timeout.
            if end is not None and (end.exit_code == 0 or end.restarts >= CRASHES_TOLERATED
                                    or pod["spec"].get("restartPolicy") == "Never"):
                raise SpawnFailed(f"the notebook exited with code {end.exit_code} "
                                   f"({end.reason}) before it was ready"
                                   f"{await self._log_tail(client, pod)}")
            await asyncio.sleep(self.status_interval)

    async def _log_tail(self, client: InterLinkClient, pod: dict[str, Any]) -> str:
        try:
            text = await client.logs(pod, NOTEBOOK_CONTAINER, tail=LOG_TAIL_LINES)
        except APIError:
            return ""
        if not text.strip():
            return ""
        lines = _CONTROL.sub("?", text).splitlines()[-LOG_TAIL_LINES:]
        return "; its last log lines:\n" + "\n".join(f"| {line}" for line in lines)

    async def progress(self) -> AsyncIterator[dict[str, Any]]:
        """The start's messages as they come (the node's waiting reasons included), with a
        bar that approaches 90 % as KubeSpawner's does."""
        sent, percent = 0, 0.0
        while True:
            future = self._start_future
            done = future is not None and future.done()
            while sent < len(self._messages):
                percent += (90 - percent) / 3
                yield {"progress": int(percent), "message": self._messages[sent]}
                sent += 1
            if done:
                return
            self._new_message.clear()
            try:
                await asyncio.wait_for(self._new_message.wait(), 1)
            except asyncio.TimeoutError:
                pass

    # --- poll, stop, state --------------------------------------------------------------------

    async def poll(self) -> int | None:
        """None while the notebook runs (or the node cannot be asked); its exit code, or 1
        when the node no longer knows the pod. A pod whose notebook ended is deleted here:
        the hub calls stop only for servers its poll says still run."""
        if self._pod_ref is None:
            return 0
        try:
            async with self._client() as client:
                status = await client.pod_status(self._pod_ref)
                end = ended(status, NOTEBOOK_CONTAINER)
                if status is not None and end is None:
                    return None
                if status is not None:
                    await self._delete(client, now=True)
        except APIError as exc:
            # Not knowing is not "stopped": the hub would drop a running server's route.
            self.log.warning("%s: cannot ask the node about the pod: %s", self._owner, exc)
            return None
        self._pod_ref = None
        self._release_port()
        return 1 if end is None else end.exit_code

    async def stop(self, now: bool = False) -> None:
        """Delete the pod (its claim's data stays on the node) and give its port back. A
        delete the node does not confirm is logged, kept with the state and tried again at
        the next start or stop; the hub goes on stopping the server (revoking its token)."""
        async with self._client() as client:
            await self._delete_leftovers(client)
            await self._delete(client, now=now)
        self._release_port()

    async def _delete(self, client: InterLinkClient, *, now: bool) -> None:
        if self._pod_ref is None:
            return
        grace = 0 if now else max(0, int(self.delete_grace_period))
        pod = {"metadata": dict(self._pod_ref["metadata"], deletionGracePeriodSeconds=grace)}
        if not await self._try_delete(client, pod, DELETE_TRIES):
            self._leftovers.append(self._pod_ref["metadata"])
        self._pod_ref = None

    async def _try_delete(self, client: InterLinkClient, pod: dict[str, Any],
                          tries: int) -> bool:
        meta = pod["metadata"]
        grace = meta.get("deletionGracePeriodSeconds", 0)
        for attempt in range(1, tries + 1):
            try:
                # The node answers once the containers are gone, after their grace period.
                await client.delete(pod, timeout=self.interlink_timeout + grace)
                return True
            except APIError as exc:
                self.log.error("%s: deleting pod %s/%s (uid %s) failed (try %d of %d): %s",
                               self._owner, meta["namespace"], meta["name"], meta["uid"],
                               attempt, tries, exc)
                if attempt < tries:
                    await asyncio.sleep(min(2.0, self.status_interval * attempt))
        return False

    async def _delete_leftovers(self, client: InterLinkClient) -> None:
        kept = []
        for meta in self._leftovers:
            if not await self._try_delete(client, {"metadata": dict(
                    meta, deletionGracePeriodSeconds=0)}, 1):
                kept.append(meta)
        self._leftovers = kept

    async def delete_forever(self) -> None:
        """A deleted user's claim directory stays on the node for its operator to remove:
        the API has no call that deletes data."""
        if self._leftovers:
            async with self._client() as client:
                await self._delete_leftovers(client)
        self.log.info("%s: user deleted; claim %s stays on the node", self._owner,
                      self.pvc_name)

    def get_state(self) -> dict[str, Any]:
        state = super().get_state()
        if self._pod_ref is not None:
            state["interlink_pod"] = self._pod_ref["metadata"]
        if self._node_port is not None:
            state["interlink_port"] = self._node_port
        if self._leftovers:
            state["interlink_leftovers"] = list(self._leftovers)
        return state

    def load_state(self, state: dict[str, Any]) -> None:
        super().load_state(state)
        meta = state.get("interlink_pod")
        if isinstance(meta, dict):
            self._pod_ref = {"metadata": _pod_meta(meta)}
        leftovers = state.get("interlink_leftovers")
        if isinstance(leftovers, list):
            self._leftovers = [_pod_meta(m) for m in leftovers if isinstance(m, dict)]
        port = state.get("interlink_port")
        if isinstance(port, int) and self._pod_ref is not None:
            if self.ports.hold(self._owner, port):
                self._node_port = port
            else:
                self.log.warning("%s: saved port %s is held by another server",
                                 self._owner, port)

    def clear_state(self) -> None:
        """After a stop (and before a start): nothing of the last server is kept but pods
        the node did not confirm deleting."""
        super().clear_state()
        self._pod_ref = None
        self._release_port()
        self._messages = []
        self._start_future = None


def _pod_meta(meta: dict[str, Any]) -> dict[str, str]:
    return {k: str(meta.get(k, "")) for k in ("name", "namespace", "uid")}


def _explain(exc: APIError) -> str:
    """The API's refusal in words a hub user and its admin can act on."""
    if isinstance(exc, APIUnreachable):
        return "the interLink API cannot be reached; ask the hub's admin to check it"
    if exc.status == 0:  # not an answer: the client's own trouble (the token file)
        return f"the hub cannot call the interLink API: {exc.message}"
    if exc.status in (401, 403):
        return (f"the interLink API refused the hub's token (HTTP {exc.status}: {exc.message});"
                " check c.InterLinkSpawner.interlink_token_file")
    return f"the node refused the server (HTTP {exc.status}): {exc.message}"

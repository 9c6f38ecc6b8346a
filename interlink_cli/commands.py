"""The subcommands, each one call (or a few) of ``InterLinkClient`` and what it prints."""

from __future__ import annotations

import ssl
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import httpx
from pydantic import ValidationError

from interlink_common.api_client import APIError, APIUnreachable, InterLinkClient
from interlink_common.plugin_auth import TokenFile, TokenFileError
from interlink_common.wire import PodStatus

from . import output
from .endpoints import Sidecar, http_client
from .errors import UNREACHABLE, USAGE, CLIFailure
from .pods_file import load_create_request
from .state import PENDING, PodState, as_pod, pod_key

# The API answers /delete once the containers are gone, after their grace period (30 s by
# default, more when the pod asks): wait well past it rather than the client's default.
DELETE_TIMEOUT_S = 330.0


@dataclass
class Context:
    """What every command needs: the API, the state file, and the sidecar for ``gpus``."""

    url: str
    token_file: str | None
    state: PodState
    sidecar: Sidecar | None = None
    verify: ssl.SSLContext | bool = True  # the API's certificate (endpoints.api_verify)

    def client(self) -> InterLinkClient:
        return InterLinkClient(self.url, token_file=self.token_file, verify=self.verify)


def say(text: str) -> None:
    print(text, flush=True)


def warn(text: str) -> None:
    """A note on stderr, beside what the command prints."""
    print(f"interlink: {text}", file=sys.stderr, flush=True)


async def ping(ctx: Context) -> int:
    async with ctx.client() as client:
        answer = await client.ping()
    r = answer.resources
    gpus = ", ".join(f"{a.resourceType}={a.available}" for a in r.accelerators) or "none"
    say(f"API {ctx.url}: {answer.status}")
    say(output.table(("CPU", "MEMORY", "PODS", "GPUS"),
                     [[r.cpu or "-", r.memory or "-", r.pods or "-", gpus]]))
    if answer.status != "ok":
        raise CLIFailure(f"the node answered status {answer.status!r}, not 'ok'")
    return 0


def maybe_created(key: str, uid: str) -> str:
    """What to do when /create went unanswered: the pod may be on the node."""
    return (f"the API may have created pod {key} (uid {uid}); it stays remembered as pending: "
            f"check with `interlink status {key}`, remove it with `interlink delete {key}`")


def nothing_created(exc: BaseException) -> bool:
    """Whether a failed /create certainly made no pod: it was never sent (a local problem,
    no connection), or the answer is a 3xx or 4xx (the API and the plugin check everything
    before creating anything). No answer, a 5xx (the API's plugin call may have timed out
    while the plugin went on) or an unreadable 200 leave the outcome unknown."""
    if isinstance(exc, ValidationError):
        return True
    if isinstance(exc, APIUnreachable):
        return not exc.sent
    if isinstance(exc, APIError):
        return exc.status != 200 and exc.status < 500
    return False


def already_exists(key: str, held: dict[str, Any]) -> str:
    pending = (f"; its create was never answered: `interlink status {key}` says whether the "
               "node has it") if held.get(PENDING) else ""
    return (f"pod {key} already exists (uid {held['uid']}{pending}); "
            f"delete it first: interlink delete {key}")


async def create(ctx: Context, files: list[str], configmaps: list[str],
                 secrets: list[str]) -> int:
    request = load_create_request(files, configmaps, secrets)
    key = pod_key(request.namespace, request.name)
    # Remembered (pending) before it is sent: if the answer is lost, the pod may run on the
    # node, and status, logs and delete must still find it by name.
    held = ctx.state.claim({
        "name": request.name, "namespace": request.namespace, "uid": request.uid,
        "containers": request.container_names(), PENDING: True,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds")})
    if held is not None:
        # Two pods under one name would leave the first one unreachable by name.
        raise CLIFailure(already_exists(key, held))
    try:
        async with ctx.client() as client:
            await client.create(request.pod, configmaps=request.configmaps,
                                secrets=request.secrets)
    except BaseException as exc:
        if nothing_created(exc):
            ctx.state.forget(key, request.uid)
        elif isinstance(exc, APIError):
            exc.add_note(maybe_created(key, request.uid))
        else:  # Ctrl-C or a crash mid-call: no message would say why the entry stays
            warn(maybe_created(key, request.uid))
        raise
    ctx.state.settle(key, request.uid)
    say(f"pod {key} created (uid {request.uid})")
    return 0


def settle_pending(ctx: Context, entry: dict[str, Any], found: PodStatus | None) -> str | None:
    """A pending entry once the API has been asked: the pod is on the node (the mark goes),
    or it is not, and the note says how to forget it."""
    key = pod_key(entry["namespace"], entry["name"])
    if output.on_node(found):
        ctx.state.settle(key, entry["uid"])
        entry.pop(PENDING, None)
        return None
    return (f"pod {key} (uid {entry['uid']}) is not on the node: its create (sent "
            f"{entry.get('created') or 'earlier'}) went unanswered and the pod was never created "
            f"(or not yet); `interlink delete {key}` forgets it, then create it again")


async def status(ctx: Context, ref: str | None, namespace: str) -> int:
    if ref is not None:
        entries = [ctx.state.find(ref, namespace)]
    else:
        entries = list(ctx.state.load().values())
        if not entries:
            say(f"no pods known (state file {ctx.state.path}); create one with "
                "interlink create -f POD.yaml")
            return 0
    async with ctx.client() as client:
        found = await client.status([as_pod(e) for e in entries])
    by_uid = {s.UID: s for s in found}
    notes = [note for e in entries if e.get(PENDING)
             and (note := settle_pending(ctx, e, by_uid.get(e["uid"]))) is not None]
    rows = [output.status_row(e, by_uid.get(e["uid"])) for e in entries]
    say(output.table(output.STATUS_HEADERS, rows))
    for note in notes:
        warn(note)
    return 0


async def logs(ctx: Context, ref: str, container: str | None, namespace: str,
               follow: bool, tail: int | None) -> int:
    entry = ctx.state.find(ref, namespace)
    names = entry.get("containers") or []
    if container is None:
        if not names:
            raise CLIFailure(f"pod {pod_key(entry['namespace'], entry['name'])}: no container "
                             "names remembered; name the container", USAGE)
        container = names[0]
    opts: dict[str, Any] = {} if tail is None else {"tail": tail}
    async with ctx.client() as client:
        if not follow:
            sys.stdout.write(await client.logs(as_pod(entry), container, **opts))
            sys.stdout.flush()
            return 0
        async with client.follow_logs(as_pod(entry), container, **opts) as chunks:
            async for chunk in chunks:
                sys.stdout.buffer.write(chunk)
                sys.stdout.buffer.flush()
    return 0


async def delete(ctx: Context, ref: str, namespace: str) -> int:
    entry = ctx.state.find(ref, namespace)
    key = pod_key(entry["namespace"], entry["name"])
    async with ctx.client() as client:
        try:
            await client.delete(as_pod(entry), timeout=DELETE_TIMEOUT_S)
        except APIError as exc:
            if exc.status == 404:  # the node has no such pod: nothing left to remember
                ctx.state.forget(key)
            raise
    ctx.state.forget(key)
    say(f"pod {key} deleted (uid {entry['uid']})")
    return 0


async def sidecar_get(sc: Sidecar, path: str, timeout: float = 30) -> httpx.Response:
    """GET one of the sidecar's operator routes (``/gpus``, ``/healthz``) as the API server
    calls it: its address, token and TLS."""
    headers = {}
    if sc.token_file:
        try:
            headers["Authorization"] = f"Bearer {TokenFile(sc.token_file).current()}"
        except TokenFileError as exc:
            raise CLIFailure(str(exc), USAGE) from None
    async with http_client(sc.base, timeout=timeout, verify=sc.ssl_context or True) as http:
        try:
            return await http.get(path, headers=headers)
        except httpx.HTTPError as exc:
            raise CLIFailure(f"cannot reach the sidecar at {sc.base}{path}: "
                             f"{exc or type(exc).__name__}; check that docker-sidecar runs "
                             "and listens where SidecarURL/SidecarPort (or Socket) in the "
                             "config say", UNREACHABLE) from None


async def gpu_report(sc: Sidecar) -> dict[str, Any]:
    """The sidecar's ``/gpus`` report."""
    reply = await sidecar_get(sc, "/gpus")
    if reply.status_code != 200:
        raise CLIFailure(f"/gpus: HTTP {reply.status_code}: {reply.text.strip()[:2000]}")
    try:
        report = reply.json()
    except ValueError:
        raise CLIFailure(f"/gpus: the sidecar's answer is not JSON: {reply.text[:200]!r}"
                         ) from None
    if not isinstance(report, dict):
        raise CLIFailure("/gpus: the sidecar's answer is not a JSON object")
    return report


async def gpus(ctx: Context) -> int:
    assert ctx.sidecar is not None, "gpus needs the sidecar's address"
    say(output.gpu_table(await gpu_report(ctx.sidecar)))
    return 0

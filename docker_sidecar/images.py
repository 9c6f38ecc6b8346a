"""Image pulls for a pod: imagePullPolicy, the pod's registry credentials, back-off, and the
waiting reasons (ErrImagePull, ImagePullBackOff, ErrImageNeverPull) status shows meanwhile."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from .engine_api import ContainerEngine
from .engine import EngineError
from .plan import registry_of
from .policy import SidecarPolicy
from .status import Waiting
from .threads import blocking

if TYPE_CHECKING:
    from .pod_worker import PodRecord

log = logging.getLogger("interlink.sidecar.pods")

# How long an image seen on the engine is taken to be still there: spares an inspect per
# image on every start.
SEEN_FOR_SECONDS = 60


class ImagePuller:
    def __init__(self, engine: ContainerEngine, policy: SidecarPolicy,
                 backoff: Callable[[int], Awaitable[None]]) -> None:
        self.engine = engine
        self.policy = policy
        self._backoff = backoff
        self._seen: dict[str, float] = {}

    async def ensure(self, rec: PodRecord) -> None:
        """Every image of the pod on the engine (the sandbox's first), retrying failed pulls
        with back-off until they succeed."""
        assert rec.plan is not None
        wanted: dict[str, tuple[str, list[str]]] = {}
        # The tunnel companion's image too: without it the pod runs but cannot be reached.
        tunnel = [rec.plan.tunnel] if rec.plan.tunnel is not None else []
        for c in list(rec.plan.containers) + tunnel:
            policy, names = wanted.setdefault(c.image, (c.pull_policy, []))
            names.append(c.name)
            if c.pull_policy == "Always":
                wanted[c.image] = ("Always", names)
        infra_image = rec.plan.infra.image
        for image, (policy, names) in [(infra_image, ("IfNotPresent", []))] + list(wanted.items()):
            attempt = 0
            while True:
                error = await self._pull_if_needed(rec, image, policy, names)
                if error is None:
                    for n in names:
                        rec.waiting.pop(n, None)
                    break
                reason, message = error
                targets = names or [c.name for c in rec.plan.containers]
                for n in targets:
                    rec.waiting[n] = Waiting(reason if attempt == 0 or reason != "ErrImagePull"
                                             else "ImagePullBackOff", message)
                log.warning("pod %s: %s", rec.ref(), message)
                await self._backoff(attempt)
                attempt += 1

    async def _pull_if_needed(self, rec: PodRecord, image: str, policy: str,
                              names: list[str]) -> tuple[str, str] | None:
        if policy != "Always" and time.monotonic() - self._seen.get(image, -1e9) < \
                SEEN_FOR_SECONDS:
            return None
        present = await blocking(self.engine.image_id, image) is not None
        if present:
            self._seen[image] = time.monotonic()
        if present and policy != "Always":
            return None
        if policy == "Never":
            return ("ErrImageNeverPull", f"image {image!r} is not on this node and "
                    "imagePullPolicy is Never")
        for n in names:
            rec.waiting[n] = Waiting("ContainerCreating", f"pulling image {image!r}")
        assert rec.plan is not None
        auth = rec.plan.registry_auth.get(registry_of(image))
        try:
            await asyncio.wait_for(asyncio.to_thread(self.engine.pull, image, auth),
                                   self.policy.PullTimeoutSeconds)
        except (EngineError, asyncio.TimeoutError) as exc:
            detail = str(exc) or f"no answer within {self.policy.PullTimeoutSeconds:.0f} s"
            return ("ErrImagePull", f"pulling image {image!r} failed: {detail}")
        self._seen[image] = time.monotonic()
        return None

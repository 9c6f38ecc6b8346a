"""Pure translation of the VK's ``PodCreateRequests`` into the plugin's ``RetrievedPodData``.

Each container gets only the objects it uses: those its ``volumeMounts`` reference (as upstream
does) and, beyond upstream, those its ``env``/``envFrom`` reference, so a plugin can resolve
``valueFrom`` without a cluster connection.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar

from interlink_common.wire import (
    ConfigMap,
    PodCreateRequests,
    RetrievedContainer,
    RetrievedPodData,
    Secret,
)

T = TypeVar("T", ConfigMap, Secret)


def _pick(objects: Iterable[T] | None, names: list[str]) -> list[T]:
    by_name = {o.metadata.name: o for o in objects or []}
    return [by_name[n] for n in names if n in by_name]


def _add(names: list[str], name: Any) -> None:
    if isinstance(name, str) and name and name not in names:
        names.append(name)


def _env_refs(container: dict[str, Any]) -> tuple[list[str], list[str]]:
    config_maps: list[str] = []
    secrets: list[str] = []
    for env in container.get("env") or []:
        source = (env or {}).get("valueFrom") or {}
        _add(config_maps, (source.get("configMapKeyRef") or {}).get("name"))
        _add(secrets, (source.get("secretKeyRef") or {}).get("name"))
    for env_from in container.get("envFrom") or []:
        _add(config_maps, ((env_from or {}).get("configMapRef") or {}).get("name"))
        _add(secrets, ((env_from or {}).get("secretRef") or {}).get("name"))
    return config_maps, secrets


def _volume_refs(volume: dict[str, Any], config_maps: list[str], secrets: list[str],
                 projected: list[str]) -> None:
    if "configMap" in volume:
        _add(config_maps, (volume["configMap"] or {}).get("name"))
    if "secret" in volume:
        _add(secrets, (volume["secret"] or {}).get("secretName"))
    if "projected" in volume:
        _add(projected, volume.get("name"))
        for source in (volume["projected"] or {}).get("sources") or []:
            _add(config_maps, ((source or {}).get("configMap") or {}).get("name"))
            _add(secrets, ((source or {}).get("secret") or {}).get("name"))
    if "downwardAPI" in volume:
        _add(projected, volume.get("name"))


def container_data(container: dict[str, Any], volumes: dict[str, dict[str, Any]],
                   req: PodCreateRequests) -> RetrievedContainer:
    config_maps, secrets = _env_refs(container)
    projected: list[str] = []
    for mount in container.get("volumeMounts") or []:
        volume = volumes.get((mount or {}).get("name", ""))
        if volume is not None:
            _volume_refs(volume, config_maps, secrets, projected)
    return RetrievedContainer(
        name=container.get("name", ""),
        configMaps=_pick(req.configmaps, config_maps),
        projectedvolumemaps=_pick(req.projectedvolumesmaps, projected),
        secrets=_pick(req.secrets, secrets),
        emptyDirs=None,
    )


def retrieved_pod_data(req: PodCreateRequests, *, export_pod_data: bool = True) -> RetrievedPodData:
    """Build what the plugin's ``/create`` receives: init containers first, then containers."""
    spec = req.pod.spec
    volumes = {v.get("name", ""): v for v in spec.get("volumes") or [] if isinstance(v, dict)}
    containers = [c for c in (spec.get("initContainers") or []) + (spec.get("containers") or [])
                  if isinstance(c, dict)]
    if export_pod_data:
        data = [container_data(c, volumes, req) for c in containers]
    else:
        data = [RetrievedContainer(name=c.get("name", "")) for c in containers]
    return RetrievedPodData(pod=req.pod, container=data, jobConfig={})

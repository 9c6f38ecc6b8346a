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
    WireError,
)

T = TypeVar("T", ConfigMap, Secret)


def _object(value: Any, where: str) -> dict[str, Any]:
    """``value`` as an object; absent is empty, anything else not an object is a 400."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise WireError(f"create request: pod {where} must be an object, got "
                        f"{type(value).__name__}")
    return value


def _objects(value: Any, where: str) -> list[dict[str, Any]]:
    """``value`` as a list of objects; absent is empty, any other shape is a 400."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise WireError(f"create request: pod {where} must be a list, got {type(value).__name__}")
    return [_object(item, f"{where}[{i}]") for i, item in enumerate(value)]


def _pick(objects: Iterable[T] | None, names: list[str]) -> list[T]:
    by_name = {o.metadata.name: o for o in objects or []}
    return [by_name[n] for n in names if n in by_name]


def _add(names: list[str], name: Any) -> None:
    if isinstance(name, str) and name and name not in names:
        names.append(name)


def _env_refs(container: dict[str, Any], where: str) -> tuple[list[str], list[str]]:
    config_maps: list[str] = []
    secrets: list[str] = []
    for i, env in enumerate(_objects(container.get("env"), f"{where}.env")):
        source = _object(env.get("valueFrom"), f"{where}.env[{i}].valueFrom")
        _add(config_maps, _object(source.get("configMapKeyRef"),
                                  f"{where}.env[{i}].valueFrom.configMapKeyRef").get("name"))
        _add(secrets, _object(source.get("secretKeyRef"),
                              f"{where}.env[{i}].valueFrom.secretKeyRef").get("name"))
    for i, env_from in enumerate(_objects(container.get("envFrom"), f"{where}.envFrom")):
        _add(config_maps, _object(env_from.get("configMapRef"),
                                  f"{where}.envFrom[{i}].configMapRef").get("name"))
        _add(secrets, _object(env_from.get("secretRef"),
                              f"{where}.envFrom[{i}].secretRef").get("name"))
    return config_maps, secrets


def _volume_refs(volume: dict[str, Any], where: str, config_maps: list[str], secrets: list[str],
                 projected: list[str]) -> None:
    if "configMap" in volume:
        _add(config_maps, _object(volume["configMap"], f"{where}.configMap").get("name"))
    if "secret" in volume:
        _add(secrets, _object(volume["secret"], f"{where}.secret").get("secretName"))
    if "projected" in volume:
        _add(projected, volume.get("name"))
        sources = _object(volume["projected"], f"{where}.projected").get("sources")
        for i, source in enumerate(_objects(sources, f"{where}.projected.sources")):
            at = f"{where}.projected.sources[{i}]"
            _add(config_maps, _object(source.get("configMap"), f"{at}.configMap").get("name"))
            _add(secrets, _object(source.get("secret"), f"{at}.secret").get("name"))
    if "downwardAPI" in volume:
        _add(projected, volume.get("name"))


def container_data(container: dict[str, Any], where: str,
                   volumes: dict[str, tuple[str, dict[str, Any]]],
                   req: PodCreateRequests) -> RetrievedContainer:
    """``where`` is the container's field path (``spec.containers[0]``); ``volumes`` maps each
    volume's name to its field path and the volume."""
    config_maps, secrets = _env_refs(container, where)
    projected: list[str] = []
    for mount in _objects(container.get("volumeMounts"), f"{where}.volumeMounts"):
        found = volumes.get(mount.get("name")) if isinstance(mount.get("name"), str) else None
        if found is not None:
            _volume_refs(found[1], found[0], config_maps, secrets, projected)
    return RetrievedContainer(
        name=container.get("name", ""),
        configMaps=_pick(req.configmaps, config_maps),
        projectedvolumemaps=_pick(req.projectedvolumesmaps, projected),
        secrets=_pick(req.secrets, secrets),
        emptyDirs=None,
    )


def retrieved_pod_data(req: PodCreateRequests, *, export_pod_data: bool = True) -> RetrievedPodData:
    """Build what the plugin's ``/create`` receives: init containers first, then containers.
    A reference of the wrong shape (``volumeMounts`` not a list, ...) is a ``WireError``."""
    spec = req.pod.spec
    volumes = {v["name"]: (f"spec.volumes[{i}]", v)
               for i, v in enumerate(_objects(spec.get("volumes"), "spec.volumes"))
               if isinstance(v.get("name"), str)}
    containers = [(f"spec.{key}[{i}]", c) for key in ("initContainers", "containers")
                  for i, c in enumerate(_objects(spec.get(key), f"spec.{key}"))]
    if export_pod_data:
        data = [container_data(c, where, volumes, req) for where, c in containers]
    else:
        data = [RetrievedContainer(name=c.get("name", "")) for _, c in containers]
    return RetrievedPodData(pod=req.pod, container=data, jobConfig={})

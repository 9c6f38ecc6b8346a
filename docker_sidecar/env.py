"""A container's environment, entrypoint and cmd, computed as the kubelet computes them.

Pure functions: no Docker, no I/O. Values are passed to Docker verbatim (never through a shell),
so quotes, newlines, ``$HOME`` and backticks reach the process exactly as written in the pod.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from interlink_common.wire import ConfigMap, Secret, WireError

from .fields import FieldError, PodFacts, resolve_field_ref, resolve_resource_field_ref

# Kubernetes' IsEnvVarName, which the kubelet applies to envFrom keys (after the prefix).
_ENV_VAR_NAME = re.compile(r"[-._a-zA-Z][-._a-zA-Z0-9]*")

_VALUE_FROM_KINDS = ("configMapKeyRef", "secretKeyRef", "fieldRef", "resourceFieldRef")


class EnvError(ValueError):
    """An environment that cannot be built; the message names the field path and the fix."""


@dataclass(frozen=True)
class EnvSources:
    """ConfigMaps and Secrets sent with the pod, as decoded key/value maps by object name."""

    config_maps: dict[str, dict[str, str]] = field(default_factory=dict)
    secrets: dict[str, dict[str, str]] = field(default_factory=dict)

    @classmethod
    def from_objects(cls, config_maps: Iterable[ConfigMap],
                     secrets: Iterable[Secret]) -> "EnvSources":
        """Decode the wire objects; values that are not UTF-8 text are left out (an env var
        cannot carry them through Docker's JSON API)."""
        try:
            return cls(
                config_maps={cm.metadata.name: _text_values(cm.values()) for cm in config_maps},
                secrets={s.metadata.name: _text_values(s.values()) for s in secrets})
        except WireError as exc:
            raise EnvError(str(exc)) from None


def _text_values(values: dict[str, bytes]) -> dict[str, str]:
    out = {}
    for key, raw in values.items():
        try:
            out[key] = raw.decode("utf-8")
        except UnicodeDecodeError:
            continue
    return out


# --- $(VAR) expansion ---------------------------------------------------------------------------


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes ``$(VAR)`` expansion: known names are replaced, unknown ones kept as written,
    ``$$`` becomes ``$``, and any other ``$`` is copied unchanged."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        if text[i] != "$" or i + 1 == n:
            out.append(text[i])
            i += 1
            continue
        following = text[i + 1]
        if following == "$":
            out.append("$")
            i += 2
        elif following == "(":
            close = text.find(")", i + 2)
            if close < 0:
                # Unterminated: keep "$(" and go on scanning after it, so a later "$$" still folds.
                out.append("$(")
                i += 2
            else:
                name = text[i + 2:close]
                out.append(env[name] if name in env else text[i:close + 1])
                i = close + 1
        else:
            out.append("$" + following)
            i += 2
    return "".join(out)


# --- environment ---------------------------------------------------------------------------------


def _optional(ref: Mapping[str, Any]) -> bool:
    return ref.get("optional") is True


def _env_from_values(source: Mapping[str, Any], path: str,
                     sources: EnvSources) -> dict[str, str] | None:
    """Key/values of one ``envFrom`` entry; None when it names an optional object that is absent."""
    for kind, noun, objects in (("configMapRef", "configmap", sources.config_maps),
                                ("secretRef", "secret", sources.secrets)):
        ref = source.get(kind)
        if ref is None:
            continue
        name = ref.get("name") or ""
        if name in objects:
            return objects[name]
        if _optional(ref):
            return None
        raise EnvError(f"{path}.{kind}: {noun} {name!r} was not sent with the pod; create it "
                       "in the pod's namespace or set optional: true")
    raise EnvError(f"{path}: set configMapRef or secretRef")


def _add_env_from(env: dict[str, str], container: Mapping[str, Any], sources: EnvSources,
                  field_prefix: str) -> None:
    for index, source in enumerate(container.get("envFrom") or []):
        values = _env_from_values(source, f"{field_prefix}.envFrom[{index}]", sources) or {}
        prefix = source.get("prefix") or ""
        # Sorted because Go iterates maps randomly; a stable order keeps container specs stable.
        for key in sorted(values):
            name = prefix + key
            if _ENV_VAR_NAME.fullmatch(name):  # the kubelet skips such keys (with an event)
                env[name] = values[key]


def _key_ref(ref: Mapping[str, Any], noun: str, objects: Mapping[str, Mapping[str, str]],
             path: str) -> str | None:
    """Value of a configMapKeyRef or secretKeyRef; None when optional and missing."""
    name, key = ref.get("name") or "", ref.get("key") or ""
    obj = objects.get(name)
    if obj is None:
        if _optional(ref):
            return None
        raise EnvError(f"{path}: {noun} {name!r} was not sent with the pod; create it in the "
                       "pod's namespace or set optional: true")
    if key not in obj:
        if _optional(ref):
            return None
        raise EnvError(f"{path}: {noun} {name!r} has no key {key!r}; add the key or set "
                       "optional: true")
    return obj[key]


def _resource_ref(ref: Mapping[str, Any], container: dict[str, Any], path: str,
                  node_cpu: int, node_memory: int) -> str:
    wanted = ref.get("containerName") or ""
    own = container.get("name") or ""
    if wanted and wanted != own:
        raise EnvError(f"{path}.containerName: {wanted!r} is another container; a container "
                       "can only read its own resources here, so remove containerName or set "
                       f"it to {own!r}")
    try:
        return resolve_resource_field_ref(container, ref.get("resource") or "",
                                          ref.get("divisor"), node_cpu=node_cpu,
                                          node_memory=node_memory)
    except FieldError as exc:
        raise EnvError(f"{path}: {exc}") from None


def _value_from(value_from: Mapping[str, Any], container: dict[str, Any], facts: PodFacts,
                sources: EnvSources, path: str, node_cpu: int, node_memory: int) -> str | None:
    """Resolve one ``valueFrom``; None means the variable is not set (optional and missing)."""
    if "configMapKeyRef" in value_from:
        return _key_ref(value_from["configMapKeyRef"] or {}, "configmap", sources.config_maps,
                        f"{path}.configMapKeyRef")
    if "secretKeyRef" in value_from:
        return _key_ref(value_from["secretKeyRef"] or {}, "secret", sources.secrets,
                        f"{path}.secretKeyRef")
    if "fieldRef" in value_from:
        try:
            return resolve_field_ref(facts, (value_from["fieldRef"] or {}).get("fieldPath", ""))
        except FieldError as exc:
            raise EnvError(f"{path}.fieldRef: {exc}") from None
    if "resourceFieldRef" in value_from:
        return _resource_ref(value_from["resourceFieldRef"] or {}, container,
                             f"{path}.resourceFieldRef", node_cpu, node_memory)
    raise EnvError(f"{path}: unsupported source {sorted(value_from)}; use one of "
                   f"{', '.join(_VALUE_FROM_KINDS)}")


def _entry_name(entry: Mapping[str, Any], path: str) -> str:
    name = entry.get("name")
    if not isinstance(name, str) or not name:
        raise EnvError(f"{path}.name: required; give every env entry a name")
    if "=" in name:
        # Docker splits NAME=VALUE at the first "=", so such a name would silently change.
        raise EnvError(f"{path}.name: {name!r} contains '='; rename the variable")
    return name


def container_env(container: dict[str, Any], facts: PodFacts, sources: EnvSources, *,
                  field_prefix: str, node_cpu: int = 1,
                  node_memory: int = 0) -> list[tuple[str, str]]:
    """Ordered (name, value) pairs: envFrom first, then env; a repeated name takes the later
    value at its first position. Raises EnvError naming the field path."""
    env: dict[str, str] = {}
    _add_env_from(env, container, sources, field_prefix)
    for index, entry in enumerate(container.get("env") or []):
        path = f"{field_prefix}.env[{index}]"
        name = _entry_name(entry, path)
        value = entry.get("value")
        if value is not None and not isinstance(value, str):
            raise EnvError(f"{path}.value: must be a string, got {value!r}; quote it")
        if value:
            # Only literal values are expanded, against what is defined so far.
            env[name] = expand(value, env)
            continue
        value_from = entry.get("valueFrom")
        if not value_from:
            env[name] = ""
            continue
        resolved = _value_from(value_from, container, facts, sources, f"{path}.valueFrom",
                               node_cpu, node_memory)
        if resolved is not None:
            env[name] = resolved
    return list(env.items())


# --- entrypoint and cmd --------------------------------------------------------------------------


def _expanded_list(items: Any, env: Mapping[str, str], key: str) -> list[str]:
    out: list[str] = []
    for index, item in enumerate(items):
        if not isinstance(item, str):
            raise EnvError(f"{key}[{index}]: must be a string, got {item!r}; quote it")
        out.append(expand(item, env))
    return out


def entrypoint_and_cmd(container: dict[str, Any],
                       env: Mapping[str, str]) -> tuple[list[str] | None, list[str] | None]:
    """Docker (Entrypoint, Cmd) for a container; None keeps the image's own value.

    ``command`` replaces the image's ENTRYPOINT and, as in Kubernetes, also discards its CMD;
    ``args`` alone replaces only CMD. Empty lists count as unset.
    """
    command = container.get("command") or []
    args = container.get("args") or []
    expanded_args = _expanded_list(args, env, "args")
    if command:
        return _expanded_list(command, env, "command"), expanded_args
    if args:
        return None, expanded_args
    return None, None

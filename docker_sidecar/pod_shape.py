"""The JSON types of the pod fields the sidecar reads, checked before anything reads them.

The planner trusts that ``spec.hostname`` is a string and ``ports[].hostPort`` a number, as
the API server would have made sure. Here nothing made sure: whoever can call the sidecar (or
write a pod spec that a VK forwards unvalidated) can send any JSON. One declarative schema of
the fields in use, checked once, turns a wrong type into a refusal naming the field instead of
a crash deep inside the planner. Unknown fields pass (newer Kubernetes fields must not be
refused), and ``null`` is always "unset", as in Kubernetes' JSON.
"""

from __future__ import annotations

from typing import Any

Schema = Any  # a type, a tuple of types, a dict of field -> schema, or a one-element list

STR, INT, BOOL = str, int, bool
QUANTITY = (str, int, float)
ANY_OBJECT: dict[str, Schema] = {}
STR_MAP = {"*": STR}

_FIELD_REF = {"fieldPath": STR, "apiVersion": STR}
_RESOURCE_REF = {"containerName": STR, "resource": STR, "divisor": QUANTITY}
_KEY_REF = {"name": STR, "key": STR, "optional": BOOL}
_OBJECT_REF = {"name": STR, "optional": BOOL}
_PORT = (INT, STR)
_HANDLER: dict[str, Schema] = {
    "exec": {"command": [STR]},
    "httpGet": {"path": STR, "port": _PORT, "host": STR, "scheme": STR,
                "httpHeaders": [{"name": STR, "value": STR}]},
    "tcpSocket": {"port": _PORT, "host": STR},
    "sleep": {"seconds": INT},
}
_PROBE: dict[str, Schema] = {
    **_HANDLER, "grpc": {"port": INT, "service": STR}, "initialDelaySeconds": INT,
    "periodSeconds": INT, "timeoutSeconds": INT, "successThreshold": INT,
    "failureThreshold": INT, "terminationGracePeriodSeconds": INT,
}
_ITEMS = [{"key": STR, "path": STR, "mode": INT}]
_DOWNWARD_ITEMS = [{"path": STR, "mode": INT, "fieldRef": _FIELD_REF,
                    "resourceFieldRef": _RESOURCE_REF}]
_VOLUME: dict[str, Schema] = {
    "name": STR,
    "configMap": {"name": STR, "items": _ITEMS, "defaultMode": INT, "optional": BOOL},
    "secret": {"secretName": STR, "items": _ITEMS, "defaultMode": INT, "optional": BOOL},
    "projected": {"defaultMode": INT, "sources": [{
        "configMap": {"name": STR, "items": _ITEMS, "optional": BOOL},
        "secret": {"name": STR, "items": _ITEMS, "optional": BOOL},
        "downwardAPI": {"items": _DOWNWARD_ITEMS},
        "serviceAccountToken": {"path": STR, "audience": STR, "expirationSeconds": INT},
    }]},
    "downwardAPI": {"defaultMode": INT, "items": _DOWNWARD_ITEMS},
    "emptyDir": {"medium": STR, "sizeLimit": QUANTITY},
    "hostPath": {"path": STR, "type": STR},
    "persistentVolumeClaim": {"claimName": STR, "readOnly": BOOL},
}

_SECURITY_CONTEXT: dict[str, Schema] = {
    "runAsUser": INT, "runAsGroup": INT, "runAsNonRoot": BOOL, "privileged": BOOL,
    "allowPrivilegeEscalation": BOOL, "readOnlyRootFilesystem": BOOL, "procMount": STR,
    "capabilities": {"add": [STR], "drop": [STR]},
    "seccompProfile": {"type": STR, "localhostProfile": STR},
    "appArmorProfile": {"type": STR, "localhostProfile": STR},
    "seLinuxOptions": {"user": STR, "role": STR, "type": STR, "level": STR},
    "windowsOptions": ANY_OBJECT,
}
_POD_SECURITY_CONTEXT: dict[str, Schema] = {
    **_SECURITY_CONTEXT, "fsGroup": INT, "supplementalGroups": [INT],
    "sysctls": [{"name": STR, "value": STR}],
}
_CONTAINER: dict[str, Schema] = {
    "name": STR, "image": STR, "command": [STR], "args": [STR], "workingDir": STR,
    "env": [{"name": STR, "value": STR, "valueFrom": {
        "configMapKeyRef": _KEY_REF, "secretKeyRef": _KEY_REF, "fieldRef": _FIELD_REF,
        "resourceFieldRef": _RESOURCE_REF}}],
    "envFrom": [{"prefix": STR, "configMapRef": _OBJECT_REF, "secretRef": _OBJECT_REF}],
    "ports": [{"name": STR, "containerPort": INT, "hostPort": INT, "protocol": STR,
               "hostIP": STR}],
    "resources": {"limits": {"*": QUANTITY}, "requests": {"*": QUANTITY}},
    "volumeMounts": [{"name": STR, "mountPath": STR, "subPath": STR, "subPathExpr": STR,
                      "readOnly": BOOL}],
    "securityContext": _SECURITY_CONTEXT, "imagePullPolicy": STR,
    "terminationMessagePath": STR, "terminationMessagePolicy": STR, "tty": BOOL, "stdin": BOOL,
    "lifecycle": {"postStart": _HANDLER, "preStop": _HANDLER},
    "livenessProbe": _PROBE, "readinessProbe": _PROBE, "startupProbe": _PROBE,
}
POD: dict[str, Schema] = {
    "metadata": {"name": STR, "namespace": STR, "uid": STR, "labels": STR_MAP,
                 "annotations": STR_MAP, "deletionGracePeriodSeconds": INT},
    "spec": {
        "containers": [_CONTAINER], "initContainers": [_CONTAINER],
        "volumes": [_VOLUME], "restartPolicy": STR,
        "terminationGracePeriodSeconds": INT, "hostname": STR, "subdomain": STR,
        "hostNetwork": BOOL, "hostPID": BOOL, "hostIPC": BOOL, "shareProcessNamespace": BOOL,
        "securityContext": _POD_SECURITY_CONTEXT,
        "hostAliases": [{"ip": STR, "hostnames": [STR]}],
        "imagePullSecrets": [{"name": STR}], "nodeName": STR, "serviceAccountName": STR,
    },
}


class ShapeError(ValueError):
    """A field of the wrong JSON type; the message names the field and the type it needs."""


def check_pod_shape(pod: Any) -> None:
    """Raise ``ShapeError`` for the first field whose JSON type is not what Kubernetes uses."""
    _check(pod, POD, "")


def _check(value: Any, schema: Schema, where: str) -> None:
    if value is None:
        return
    if isinstance(schema, dict):
        if not isinstance(value, dict):
            raise ShapeError(f"{where or 'pod'} must be an object, got {_kind(value)}")
        for key, item in value.items():
            sub = schema.get(key, schema.get("*"))
            if sub is not None:
                _check(item, sub, f"{where}.{key}" if where else str(key))
        return
    if isinstance(schema, list):
        if not isinstance(value, list):
            raise ShapeError(f"{where} must be a list, got {_kind(value)}")
        for i, item in enumerate(value):
            if item is None:  # unset fields are null; list entries are never
                raise ShapeError(f"{where}[{i}] is null; remove the entry")
            _check(item, schema[0], f"{where}[{i}]")
        return
    types = schema if isinstance(schema, tuple) else (schema,)
    # JSON has no bool/int distinction problem in Kubernetes: true is never a number.
    if isinstance(value, bool) and bool not in types or not isinstance(value, types):
        raise ShapeError(f"{where} must be {_names(types)}, got {_kind(value)} {_show(value)}")


def _names(types: tuple[type, ...]) -> str:
    words = {str: "a string", int: "an integer", bool: "true or false", float: "a number"}
    return " or ".join(words[t] for t in types)


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
            int: "a number", float: "a number"}.get(type(value), type(value).__name__)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."

"""080 configmap/secret env: variables from ``configMapKeyRef`` and ``secretKeyRef`` (env names
differing from the keys) reach the process. The current VK resolves them into plain values;
the legacy VK sends the references with the ConfigMap and Secret, and the sidecar resolves
them."""

from __future__ import annotations

from ..cluster import NAMESPACE as NS
from ..model import Case, LogCheck, PodCheck, config_map, pod, python, secret

TEMPLATE = "080-configmap-secret-env.yaml"

PROGRAM = """\
import os
print("--- from the ConfigMap ---")
for name in ("APP_NAME", "APP_VERSION", "ENVIRONMENT"):
    print(f"{name}: {os.environ.get(name, 'NOT_SET')}")
print("--- from the Secret ---")
for name in ("API_KEY", "DB_PASSWORD", "AUTH_TOKEN"):
    print(f"{name}: {os.environ.get(name, 'NOT_SET')}")
print("Test completed")
"""


def _ref(kind: str, obj: str, env: str, key: str) -> dict:
    return {"name": env, "valueFrom": {kind: {"name": obj, "key": key}}}


def build(s: str) -> Case:
    name, cm, sec = f"configmap-secret-test-{s}", f"test-config-{s}", f"test-secret-{s}"
    env = [_ref("configMapKeyRef", cm, "APP_NAME", "app-name"),
           _ref("configMapKeyRef", cm, "APP_VERSION", "app-version"),
           _ref("configMapKeyRef", cm, "ENVIRONMENT", "environment"),
           _ref("secretKeyRef", sec, "API_KEY", "api-key"),
           _ref("secretKeyRef", sec, "DB_PASSWORD", "database-password"),
           _ref("secretKeyRef", sec, "AUTH_TOKEN", "token")]
    expected = ["APP_NAME: config-test-app", "APP_VERSION: 1.0.0", "ENVIRONMENT: test",
                "API_KEY: secret-api-key-12345", "DB_PASSWORD: super-secret-password",
                "AUTH_TOKEN: bearer-token-xyz789", "Test completed"]
    return Case(
        TEMPLATE, "env from configMapKeyRef and secretKeyRef",
        config_maps=[config_map(cm, NS, {"app-name": "config-test-app", "app-version": "1.0.0",
                                         "environment": "test"})],
        secrets=[secret(sec, NS, {"api-key": "secret-api-key-12345",
                                  "database-password": "super-secret-password",
                                  "token": "bearer-token-xyz789"})],
        pods=[pod(name, [python("configmap-secret-container", "python:alpine", PROGRAM,
                                env=env)], namespace=NS,
                  labels={"app": "configmap-secret-test", "version": "1.0", "test-id": s})],
        pod_checks=[PodCheck(name)],
        log_checks=[LogCheck(name, line) for line in expected],
        timeout_seconds=15)

"""085 secret envFrom: ``envFrom.secretRef`` of two Secrets exposes every key of both, under
its own name (no prefix added)."""

from __future__ import annotations

from ..cluster import NAMESPACE as NS
from ..model import Case, LogCheck, PodCheck, pod, python, secret

TEMPLATE = "085-secret-envfrom.yaml"

APP = {"DATABASE_URL": "postgresql://user:pass@localhost:5432/mydb",
       "API_KEY": "sk-1234567890abcdef", "SERVICE_TOKEN": "token-xyz-789",
       "CACHE_HOST": "redis.example.com:6379", "LOG_LEVEL": "debug"}
AWS = {"AWS_ACCESS_KEY_ID": "AKIAIOSFODNN7EXAMPLE",
       "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
       "AWS_DEFAULT_REGION": "us-west-2"}

PROGRAM = f"""\
import os
import sys

groups = {{"app": {sorted(APP)!r}, "aws": {sorted(AWS)!r}}}
missing = []
for group, names in groups.items():
    print(f"--- {{group}} secret ---")
    for name in names:
        value = os.environ.get(name)
        if not value:
            print(f"✗ {{name}}: NOT_SET")
            missing.append(name)
        elif any(word in name for word in ("KEY", "TOKEN", "SECRET", "PASSWORD")):
            shown = value[:4] + "***" + value[-4:] if len(value) > 8 else "***"
            print(f"✓ {{name}}: {{shown}}")
        else:
            print(f"✓ {{name}}: {{value}}")

expected = [n for names in groups.values() for n in names]
prefixed = [k for k in os.environ if any(k != n and k.endswith(n) for n in expected)]
print("prefixed variables:", prefixed or "none")
if missing:
    print(f"FAILED: {{len(missing)}} variables missing: {{missing}}")
    sys.exit(1)
print("envFrom secretRef test completed successfully")
"""


def build(s: str) -> Case:
    name, app, aws = f"secret-envfrom-test-{s}", f"app-credentials-{s}", f"aws-credentials-{s}"
    expected = ["✓ DATABASE_URL: postgresql", "✓ API_KEY: sk-1", "✓ SERVICE_TOKEN: toke",
                "✓ CACHE_HOST: redis.example.com:6379", "✓ LOG_LEVEL: debug",
                "✓ AWS_ACCESS_KEY_ID: AKIA", "✓ AWS_SECRET_ACCESS_KEY: wJal",
                "✓ AWS_DEFAULT_REGION: us-west-2",
                "envFrom secretRef test completed successfully"]
    return Case(
        TEMPLATE, "envFrom secretRef of two Secrets",
        secrets=[secret(app, NS, APP), secret(aws, NS, AWS)],
        pods=[pod(name, [python("env-test-container", "python:alpine", PROGRAM,
                                envFrom=[{"secretRef": {"name": app}},
                                         {"secretRef": {"name": aws}}])],
                  namespace=NS, labels={"app": "secret-envfrom-test", "test-id": s})],
        pod_checks=[PodCheck(name)],
        log_checks=[LogCheck(name, line) for line in expected],
        timeout_seconds=20)

"""090 probes: an HTTP server answers a startup probe (healthy after 5 s), a liveness probe
(always healthy) and a readiness probe (ready after 8 s); the pod must be Running with all
three probes seen to succeed in its log.

Needs startup and liveness probes in the sidecar (readiness alone is not enough: the log must
show the startup and liveness endpoints being hit).
"""

from __future__ import annotations

from ..cluster import NAMESPACE as NS
from ..model import Case, LogCheck, PodCheck, pod, shell

TEMPLATE = "090-probes.yaml"

SCRIPT = """\
cat > /tmp/probed.py <<'PY'
import http.server
import socketserver
import time
from datetime import datetime

PORT = 8080
born = time.time()


def say(text):
    print(f"[{datetime.now():%H:%M:%S.%f}] {text}", flush=True)


class Probed(http.server.BaseHTTPRequestHandler):
    def reply(self, code, body):
        self.send_response(code)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        age = time.time() - born
        if self.path == "/startup":
            if age > 5:
                self.reply(200, b"started\\n")
                say(f"Startup probe: OK after {age:.1f}s")
            else:
                self.reply(503, b"starting\\n")
                say(f"Startup probe: not yet ({age:.1f}s)")
        elif self.path == "/healthz":
            self.reply(200, b"alive\\n")
            say("Liveness probe: OK")
        elif self.path == "/ready":
            if age > 8:
                self.reply(200, b"ready\\n")
                say(f"Readiness probe: Ready after {age:.1f}s")
            else:
                self.reply(503, b"warming up\\n")
                say(f"Readiness probe: not ready ({age:.1f}s)")
        else:
            self.reply(404, b"")

    def log_message(self, *args):
        pass


say(f"Starting HTTP server on port {PORT} (/startup, /healthz, /ready)")
with socketserver.TCPServer(("", PORT), Probed) as server:
    server.serve_forever()
PY
python3 -u /tmp/probed.py
"""


def _http(path: str, initial: int, period: int, failures: int) -> dict:
    return {"httpGet": {"path": path, "port": 8080}, "initialDelaySeconds": initial,
            "periodSeconds": period, "failureThreshold": failures, "successThreshold": 1,
            "timeoutSeconds": 1}


def build(s: str) -> Case:
    name = f"probes-test-{s}"
    return Case(
        TEMPLATE, "startup, liveness and readiness httpGet probes",
        pods=[pod(name, [shell(
            "probe-test", "python:3.11-alpine", SCRIPT,
            ports=[{"containerPort": 8080, "protocol": "TCP"}],
            startupProbe=_http("/startup", 5, 10, 5),
            livenessProbe=_http("/healthz", 5, 5, 3),
            readinessProbe=_http("/ready", 3, 3, 3),
            resources={"limits": {"memory": "128Mi", "cpu": "200m"},
                       "requests": {"memory": "64Mi", "cpu": "100m"}})], namespace=NS)],
        pod_checks=[PodCheck(name, "Running")],
        log_checks=[LogCheck(name, line, container="probe-test") for line in (
            "Starting HTTP server on port 8080", "Startup probe: OK", "Liveness probe: OK",
            "Readiness probe: Ready")],
        timeout_seconds=40)

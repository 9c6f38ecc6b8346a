"""030 simple shared volume: two containers share an emptyDir; one writes a file, the other
(mounting it read-only) reads it back and cannot delete it.

Our version: the reader waits for the file to appear (up to 20 s) instead of sleeping a fixed
0.7 s and hoping the writer was faster. Upstream's fixed sleep is a race the reader loses
whenever its container starts before the writer's Python has run, on a cluster or here; what
is checked (shared content, read-only mount) is unchanged.
"""

from __future__ import annotations

from ..cluster import NAMESPACE as NS
from ..model import Case, LogCheck, PodCheck, mount, pod, python

TEMPLATE = "030-simple-shared-volume.yaml"

WRITER = """\
with open("/shared-vol/dump", "w") as out:
    out.write("Dumped contents")
"""

READER = """\
import os
import time

path = "/shared-vol/dump"
deadline = time.monotonic() + 20
while not (os.path.exists(path) and os.path.getsize(path)) and time.monotonic() < deadline:
    time.sleep(0.1)
with open(path) as dump:
    print(dump.read())
try:
    os.remove(path)
except OSError:
    print("RO mount ok")
"""


def build(s: str) -> Case:
    name = f"simple-shared-volume-{s}"
    return Case(
        TEMPLATE, "emptyDir shared by two containers, one mount read-only",
        pods=[pod(name, [
            python("writer", "python:alpine", WRITER,
                   volumeMounts=[mount("shared-vol", "/shared-vol")]),
            python("reader", "python:alpine", READER,
                   volumeMounts=[mount("shared-vol", "/shared-vol", readOnly=True)]),
        ], namespace=NS, volumes=[{"name": "shared-vol", "emptyDir": {"sizeLimit": "500Mi"}}])],
        pod_checks=[PodCheck(name)],
        log_checks=[LogCheck(name, "Dumped contents", container="reader"),
                    LogCheck(name, "RO mount ok", container="reader")],
        timeout_seconds=10)

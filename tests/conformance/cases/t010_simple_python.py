"""010 simple python: a multi-line ``python -c`` program with quotes, non-ASCII text and an
emoji in its source must reach the interpreter unmangled and run to completion."""

from __future__ import annotations

from ..cluster import NAMESPACE as NS
from ..model import Case, LogCheck, PodCheck, pod, python

TEMPLATE = "010-simple-python.yaml"

PROGRAM = """\
# Characters a careless layer would escape, strip or re-encode.
print("Quotes \\" and ' with symbols @!£$%&/()=?^*°§ and accents òéç")
print("Beyond ASCII: 🤩 ∑ ж")

first, second = 1, 2
total = first + second
print(f"{first} + {second} = {total}")
print("Completed")
"""


def build(s: str) -> Case:
    name = f"simple-python-{s}"
    return Case(
        TEMPLATE, "multi-line python -c with special characters",
        pods=[pod(name, [python("simple-python", "python:alpine", PROGRAM)], namespace=NS)],
        pod_checks=[PodCheck(name)],
        log_checks=[LogCheck(name, "Completed")],
        timeout_seconds=20)

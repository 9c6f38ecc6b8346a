"""105 env quotes: seventeen env values full of single, double and back quotes, backslashes,
newlines, JSON, SQL and shell syntax, an empty string and blanks must reach the process
byte for byte."""

from __future__ import annotations

from ..cluster import NAMESPACE as NS
from ..model import Case, LogCheck, PodCheck, pod, python

TEMPLATE = "105-env-quotes.yaml"

VALUES: list[tuple[str, str]] = [
    ("SINGLE_QUOTES", "It's a beautiful day"),
    ("DOUBLE_QUOTES", 'He said "hello world"'),
    ("MIXED_QUOTES", "She said \"It's working!\""),
    ("JSON_STRING", '{"name": "test", "value": "123"}'),
    ("SHELL_COMMAND", "echo 'Hello' && echo \"World\""),
    ("ESCAPED_DOUBLE", 'This is a \\"quoted\\" word'),
    ("ESCAPED_SINGLE", "This is a \\'quoted\\' word"),
    ("BOTH_QUOTE_TYPES", "Both \"double\" and 'single' quotes"),
    ("EMPTY_STRING", ""),
    ("SPACES_ONLY", "   "),
    ("QUOTES_ONLY_SINGLE", "'''"),
    ("QUOTES_ONLY_DOUBLE", '"""'),
    ("PATH_WITH_QUOTES", '/path/to/"some file"/directory'),
    ("SQL_QUERY", "SELECT * FROM users WHERE name = 'John'"),
    ("BACKTICKS", "Run `command` here"),
    ("NEWLINE_WITH_QUOTES", "Line 1\nLine 2 with 'quotes'\nLine 3"),
    ("SPECIAL_CHARS", "Value with @#$%^&*() and 'quotes'"),
]

PROGRAM = f"""\
import json
import os
import sys

expected = {VALUES!r}
wrong = []
for name, want in expected:
    got = os.environ.get(name)
    print(f"--- Testing: {{name}} ---")
    print(f"  want {{want!r}}")
    print(f"  got  {{got!r}}")
    if got != want:
        wrong.append(name)
        print("  MISMATCH")

try:
    doc = json.loads(os.environ.get("JSON_STRING") or "")
    assert doc == {{"name": "test", "value": "123"}}, doc
    print("JSON parsing successful:", doc)
except Exception as exc:
    wrong.append("JSON_STRING (parse)")
    print("JSON parsing failed:", exc)

print(f"{{len(expected) - len(wrong)}}/{{len(expected)}} values intact")
if wrong:
    print("ENV_QUOTES_TEST_FAILED:", wrong)
    sys.exit(1)
print("All tests PASSED")
print("ENV_QUOTES_TEST_PASSED")
"""


def build(s: str) -> Case:
    name = f"env-quotes-test-{s}"
    return Case(
        TEMPLATE, "quotes and special characters in env values",
        pods=[pod(name, [python("quote-tester", "python:3.11-alpine", PROGRAM,
                                env=[{"name": n, "value": v} for n, v in VALUES])],
                  namespace=NS, labels={"app": "env-quotes-test", "test-id": s})],
        pod_checks=[PodCheck(name, "Succeeded")],
        log_checks=[LogCheck(name, line, container="quote-tester") for line in (
            "ENV_QUOTES_TEST_PASSED", "Testing: SINGLE_QUOTES", "Testing: DOUBLE_QUOTES",
            "Testing: JSON_STRING", "JSON parsing successful", "All tests PASSED")],
        timeout_seconds=20)

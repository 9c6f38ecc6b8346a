"""The failures the CLI reports in words, each with the exit code operators expect."""

from __future__ import annotations

# 0 is success and 2 is argparse's own usage error; the rest are ours.
NOT_FOUND_OR_REFUSED = 1
USAGE = 2
UNREACHABLE = 3


class CLIFailure(Exception):
    """An expected failure: the message is printed (never a traceback) and ``code`` returned."""

    def __init__(self, message: str, code: int = NOT_FOUND_OR_REFUSED) -> None:
        super().__init__(message)
        self.code = code

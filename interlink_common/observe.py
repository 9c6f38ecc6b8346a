"""ASGI middleware that reports every HTTP request's route, method, status and duration."""

from __future__ import annotations

import time
from collections.abc import Callable, Collection

from starlette.types import ASGIApp, Message, Receive, Scope, Send

# (route, method, status, seconds, what the call was about: e.g. "default/jupyter-alice")
Record = Callable[[str, str, int, float, str], None]
# Where a handler notes what its call was about, for the access line: the ASGI scope, which
# the middleware still holds when the response is done (a contextvar would not come back
# from a task the framework ran the handler in).
SUBJECT = "interlink.subject"


def note_subject(scope: Scope, subject: str) -> None:
    """Say what this request is about (a pod, a container, a batch), for its access line."""
    scope[SUBJECT] = subject


class RequestObserver:
    """Calls ``record(route, method, status, seconds, subject)`` once per request. Paths
    outside ``routes`` are reported as ``other`` so that metric labels stay bounded."""

    def __init__(self, app: ASGIApp, routes: Collection[str], record: Record) -> None:
        self.app = app
        self.routes = frozenset(routes)
        self.record = record

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            path = scope["path"]
            self.record(path if path in self.routes else "other", scope["method"], status,
                        time.perf_counter() - start, str(scope.get(SUBJECT, "")))

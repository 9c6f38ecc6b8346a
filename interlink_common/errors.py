"""How a failed request becomes an answer, the same way in both services.

A handler raises; ``answer_errors`` turns what it raised into the status code and text the
client reads (docs/PROTOCOL.md sections 1 and 2, "Errors"):

* ``RequestTooLarge``: 413, its message names the cap and the config key that raises it;
* ``WireError`` (a body that does not match the wire contract): 400, naming the field;
* an exception the service expects (``expected``, e.g. the plugin unreachable): its status, with
  an error log line and no traceback;
* anything else: 500 naming the path and the exception, the message scrubbed of secrets
  (``logconfig.redact``), and the traceback logged. A bad request never crashes the server.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from .logconfig import redact
from .wire import WireError


class RequestTooLarge(Exception):
    """The request is over a cap; the message names the cap, its key and the fix."""


async def answer_errors(request: Request, call: Callable[[], Awaitable[Response]],
                        log: logging.Logger,
                        expected: Mapping[type[Exception], int] | None = None) -> Response:
    """``await call()``, with every exception it raises turned into a plain-text answer."""
    try:
        return await call()
    except RequestTooLarge as exc:
        return PlainTextResponse(str(exc), status_code=413)
    except WireError as exc:
        return PlainTextResponse(str(exc), status_code=400)
    except Exception as exc:  # never crash on input; log what an operator needs
        for kind, status in (expected or {}).items():
            if isinstance(exc, kind):
                log.error("%s: %s", request.url.path, exc)
                return PlainTextResponse(str(exc), status_code=status)
        log.exception("%s failed", request.url.path)
        return PlainTextResponse(f"internal error in {request.url.path}: "
                                 f"{type(exc).__name__}: {redact(str(exc))}", status_code=500)

"""Node defaults for containers that set no CPU or memory limit, as a namespace LimitRange's
``default`` would give them (``Sidecar.DefaultCPULimit``, ``Sidecar.DefaultMemoryLimit``)."""

from __future__ import annotations

from typing import Any

from .policy import SidecarPolicy
from .quantity import QuantityError, byte_count, cpu_millis


def default_limits(limits: dict[str, Any], requests: dict[str, Any],
                   policy: SidecarPolicy) -> dict[str, Any]:
    """``limits`` with the node's defaults filled in where the container set none.

    A request above the default becomes the limit (a LimitRange would refuse the pod; running
    it with what it asked for is kinder and still bounded). A bad request is left for the
    caller to report, with its field name.
    """
    out = dict(limits)
    for key, default, parse in (("cpu", policy.DefaultCPULimit, cpu_millis),
                                ("memory", policy.DefaultMemoryLimit, byte_count)):
        if not default or out.get(key) is not None:
            continue
        out[key] = default
        if requests.get(key) is not None:
            try:
                if parse(requests[key]) > parse(default):
                    out[key] = requests[key]
            except QuantityError:
                pass
    return out

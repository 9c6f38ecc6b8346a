"""Kubernetes resource quantities ("500m", "1Gi", "16G", "4", "1e3") as numbers."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

_SUFFIX = {
    "": Decimal(1),
    "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"),
    "k": Decimal(10) ** 3, "M": Decimal(10) ** 6, "G": Decimal(10) ** 9,
    "T": Decimal(10) ** 12, "P": Decimal(10) ** 15, "E": Decimal(10) ** 18,
    "Ki": Decimal(2) ** 10, "Mi": Decimal(2) ** 20, "Gi": Decimal(2) ** 30,
    "Ti": Decimal(2) ** 40, "Pi": Decimal(2) ** 50, "Ei": Decimal(2) ** 60,
}
_QUANTITY = re.compile(r"^([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]?)$")


class QuantityError(ValueError):
    pass


def parse_quantity(value: str | int | float) -> Decimal:
    """The quantity's value in base units (cores for CPU, bytes for memory)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return Decimal(str(value))
    text = str(value).strip()
    match = _QUANTITY.match(text)
    if not match:
        raise QuantityError(f"{value!r} is not a Kubernetes quantity (e.g. 500m, 2, 1Gi, 16G)")
    try:
        number = Decimal(match.group(1))
    except InvalidOperation:
        raise QuantityError(f"{value!r} is not a Kubernetes quantity") from None
    if number < 0:
        raise QuantityError(f"{value!r} is negative")
    return number * _SUFFIX[match.group(2)]


def cpu_millis(value: str | int | float) -> int:
    """CPU in millicores, rounded up as Kubernetes does (1m is the smallest unit)."""
    return int((parse_quantity(value) * 1000).to_integral_value(rounding="ROUND_CEILING"))


def byte_count(value: str | int | float) -> int:
    """Memory or storage in bytes, rounded up."""
    return int(parse_quantity(value).to_integral_value(rounding="ROUND_CEILING"))


def format_bytes_k8s(n: int) -> str:
    """Bytes as the largest exact binary quantity (``64Gi``), for node capacity reports."""
    for suffix in ("Ei", "Pi", "Ti", "Gi", "Mi", "Ki"):
        unit = int(_SUFFIX[suffix])
        if n and n % unit == 0:
            return f"{n // unit}{suffix}"
    return str(n)

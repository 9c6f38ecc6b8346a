"""What every benchmark reports: rows of a measured figure next to its baseline from the same run.

A benchmark module's ``run(quick: bool) -> list[Section]`` returns its sections; ``scripts/bench``
keeps every section in ``docs/perf/results.json`` and renders ``docs/PERFORMANCE.md`` from it.
A figure is a ``Stat`` (median with its spread) built from raw samples by ``Stat.of``. Whether a
target is met is decided here, from the numbers, never written by hand.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Kind = Literal["ratio", "max", "min"]


@dataclass
class Stat:
    """A median with its spread (10th and 90th percentiles) and how many samples made it."""

    median: float
    p10: float
    p90: float
    n: int
    unit: str
    p99: float | None = None

    @classmethod
    def of(cls, samples: list[float], unit: str, *, scale: float = 1.0) -> "Stat":
        if not samples:
            raise ValueError("no samples")
        xs = sorted(x * scale for x in samples)
        if len(xs) == 1:
            return cls(xs[0], xs[0], xs[0], 1, unit, xs[0])
        q = statistics.quantiles(xs, n=100, method="inclusive")
        return cls(statistics.median(xs), q[9], q[89], len(xs), unit, q[98])

    @classmethod
    def single(cls, value: float, unit: str) -> "Stat":
        return cls(value, value, value, 1, unit)


@dataclass
class Target:
    """``kind`` "ratio": measured median <= ``limit`` x baseline median; "max": the row's
    ``on`` figure (median, p99, ...) <= ``limit``; "min": that figure >= ``limit``."""

    kind: Kind
    limit: float
    on: str = "median"  # which figure of the measured Stat the limit applies to

    def text(self, unit: str) -> str:
        if self.kind == "ratio":
            return f"<= {self.limit:g}x baseline"
        sign = "<=" if self.kind == "max" else ">="
        what = "" if self.on == "median" else f"{self.on} "
        return f"{what}{sign} {self.limit:g} {unit}"


@dataclass
class Row:
    what: str
    measured: Stat
    baseline: Stat | None = None
    baseline_what: str = ""
    target: Target | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.baseline is None or not self.baseline.median:
            return None
        return self.measured.median / self.baseline.median

    @property
    def value(self) -> float:
        return getattr(self.measured, self.target.on if self.target else "median")

    @property
    def met(self) -> bool | None:
        t = self.target
        if t is None:
            return None
        if t.kind == "ratio":
            return self.ratio is not None and self.ratio <= t.limit
        return self.value <= t.limit if t.kind == "max" else self.value >= t.limit

    @property
    def miss(self) -> str:
        """By how much a missed target is missed, in words ("" when met or no target)."""
        t = self.target
        if t is None or self.met is not False:
            return ""
        if t.kind == "ratio":
            assert self.ratio is not None
            return f"{self.ratio:.2f}x against {t.limit:g}x ({(self.ratio / t.limit - 1) * 100:.0f} % over)"
        over = abs(self.value - t.limit) / t.limit * 100 if t.limit else float("inf")
        return f"{self.value:.3g} {self.measured.unit} against {t.limit:g} ({over:.0f} % off)"


@dataclass
class Section:
    """One benchmark's part of PERFORMANCE.md."""

    key: str  # file-name safe; also the ``--only`` name
    title: str
    command: str
    rows: list[Row]
    intro: str = ""  # what is measured and how (markdown)
    # Shown under the table; a missed target's explanation (why, what would close it) belongs
    # here, written by the benchmark from its numbers.
    notes: list[str] = field(default_factory=list)
    plots: list[str] = field(default_factory=list)  # paths relative to docs/
    quick: bool = False
    when: str = ""  # ISO time of the run, filled in by the runner
    machine: dict[str, Any] = field(default_factory=dict)  # filled in by the runner
    extra: dict[str, Any] = field(default_factory=dict)  # raw series for plots, kept in JSON

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Section":
        rows = []
        for r in data["rows"]:
            rows.append(Row(
                what=r["what"], measured=Stat(**r["measured"]),
                baseline=Stat(**r["baseline"]) if r.get("baseline") else None,
                baseline_what=r.get("baseline_what", ""),
                target=Target(**r["target"]) if r.get("target") else None,
                note=r.get("note", "")))
        return cls(**{**data, "rows": rows})

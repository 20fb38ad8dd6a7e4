"""Rows of benchmark results, the table they print as, and the JSON file they are saved to."""

from __future__ import annotations

import dataclasses
import json
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, kw_only=True)
class Row:
    """One figure: `note` says what it is compared with (a target or a baseline)."""

    benchmark: str
    variant: str
    value: float | str
    unit: str = ""
    note: str = ""


def median(samples: Sequence[float]) -> float:
    return statistics.median(samples)


def percentile(samples: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of unsorted `samples` (`fraction` 0.99 for p99)."""
    ordered = sorted(samples)
    return ordered[max(1, math.ceil(fraction * len(ordered))) - 1]


def format_value(value: float | str) -> str:
    if isinstance(value, str):
        return value
    if abs(value) >= 100:
        return f"{value:.1f}"
    return f"{value:.3f}"


def format_table(rows: Sequence[Row]) -> str:
    """An aligned text table; numbers are right-aligned, everything else left-aligned."""
    header = ("benchmark", "variant", "value", "unit", "target / baseline")
    cells = [header] + [
        (r.benchmark, r.variant, format_value(r.value), r.unit, r.note) for r in rows
    ]
    widths = [max(len(line[i]) for line in cells) for i in range(len(header))]

    def line(values: Sequence[str]) -> str:
        parts = [
            v.rjust(w) if i == 2 else v.ljust(w)
            for i, (v, w) in enumerate(zip(values, widths, strict=True))
        ]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule, *(line(c) for c in cells[1:])])


def write_json(rows: Sequence[Row], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = [dataclasses.asdict(r) for r in rows]
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")

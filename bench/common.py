"""Shared benchmark plumbing: interleaved runs, medians and ratios, a markdown table.

Benchmarks compare Skiff with a peer in the same run (interleaved, so machine noise hits both
alike) and report ratios, never absolute pass/fail thresholds.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field


@dataclass
class Series:
    name: str
    samples: list[float] = field(default_factory=list)  # seconds

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def p90(self) -> float:
        s = sorted(self.samples)
        return s[min(len(s) - 1, int(round(0.9 * (len(s) - 1))))]


def time_call(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def run_cmd(argv: Sequence[str], **kw) -> Callable[[], None]:
    def go() -> None:
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)

    return go


def interleave(
    cases: Mapping[str, Callable[[], object]],
    runs: int,
    warmup: int = 2,
    setup: Callable[[str], None] | None = None,
) -> list[Series]:
    """Run every case once per round, `runs` rounds, after `warmup` untimed rounds."""
    series = {name: Series(name) for name in cases}
    for i in range(warmup + runs):
        for name, fn in cases.items():
            if setup:
                setup(name)
            dt = time_call(fn)
            if i >= warmup:
                series[name].samples.append(dt)
        print(f"\r  round {i + 1}/{warmup + runs}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    return list(series.values())


def table(series: list[Series], baseline: str, unit: str = "ms") -> str:
    """A markdown table with median, p90 and the ratio of each median to the baseline's."""
    scale = 1000.0 if unit == "ms" else 1.0
    base = next(s for s in series if s.name == baseline).median
    rows = [f"| command | runs | median ({unit}) | p90 ({unit}) | ratio to {baseline} |",
            "|---|---|---|---|---|"]
    for s in series:
        rows.append(
            f"| {s.name} | {len(s.samples)} | {s.median * scale:.1f} | {s.p90 * scale:.1f} "
            f"| {s.median / base:.2f}x |"
        )
    return "\n".join(rows)

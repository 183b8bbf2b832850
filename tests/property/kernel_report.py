"""The kernel-behaviour report the property suites write (JSON + markdown) per run.

Each example records its limit family, the input, what Skiff decided, what the kernel did and a
short behaviour label ("rounds down to a page", "EINVAL below 1000 us", ...). The JSON has the
same shape on every machine so that two kernels can be compared side by side:

    python -m tests.property.kernel_report results/a.json results/b.json > comparison.md
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from collections import Counter
from pathlib import Path

MAX_EXAMPLES_KEPT = 12


class Report:
    def __init__(self, cgroup_version: str, profile: str) -> None:
        self.meta = {
            "kernel": platform.release(),
            "machine": platform.machine(),
            "cgroup_version": cgroup_version,
            "python": platform.python_version(),
            "hypothesis_profile": profile,
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        self.t0 = time.monotonic()
        self.families: dict[str, dict] = {}

    def _family(self, name: str) -> dict:
        return self.families.setdefault(
            name,
            {"examples": 0, "outcomes": Counter(), "behaviours": Counter(), "tried": [],
             "seconds": 0.0, "notes": []},
        )

    def record(self, family: str, value: object, outcome: str, behaviour: str,
               readback: object = None, seconds: float = 0.0) -> None:
        """outcome: accepted | skiff-rejected | both-rejected | policy-rejected | enforced"""
        f = self._family(family)
        f["examples"] += 1
        f["outcomes"][outcome] += 1
        f["behaviours"][behaviour] += 1
        f["seconds"] += seconds
        if len(f["tried"]) < MAX_EXAMPLES_KEPT or f["behaviours"][behaviour] == 1:
            f["tried"].append(
                {"input": _jsonable(value), "outcome": outcome, "behaviour": behaviour,
                 "readback": _jsonable(readback)}
            )

    def note(self, family: str, text: str) -> None:
        f = self._family(family)
        if text not in f["notes"]:
            f["notes"].append(text)

    def to_dict(self) -> dict:
        elapsed = time.monotonic() - self.t0
        total = sum(f["examples"] for f in self.families.values())
        fams = {}
        for name, f in sorted(self.families.items()):
            fams[name] = {
                "examples": f["examples"],
                "outcomes": dict(f["outcomes"]),
                "behaviours": dict(f["behaviours"]),
                "examples_per_second": round(f["examples"] / f["seconds"], 1)
                if f["seconds"] else None,
                "notes": f["notes"],
                "tried": f["tried"],
            }
        no_kernel = sum(f["outcomes"].get("docker-rejected", 0) for f in self.families.values())
        return {
            **self.meta,
            "elapsed_seconds": round(elapsed, 2),
            "examples": total,
            "kernel_examples": total - no_kernel,
            "examples_per_second": round(total / elapsed, 1) if elapsed else None,
            "distinct_behaviours": sum(len(f["behaviours"]) for f in self.families.values()),
            "families": fams,
        }

    def write(self, directory: Path) -> tuple[Path, Path]:
        directory.mkdir(parents=True, exist_ok=True)
        data = self.to_dict()
        stem = f"kernel-behaviour-{data['kernel']}-cgroup{data['cgroup_version']}"
        jp, mp = directory / f"{stem}.json", directory / f"{stem}.md"
        jp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
        mp.write_text(markdown([data]))
        return jp, mp


def _jsonable(v: object) -> object:
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    return repr(v)


def markdown(reports: list[dict]) -> str:
    """One column per kernel: behaviours observed per family, then examples tried."""
    cols = [f"{r['kernel']} (cgroup {r['cgroup_version']})" for r in reports]
    out = ["# Kernel behaviour observed by the cgroup property tests", ""]
    out.append("| | " + " | ".join(cols) + " |")
    out.append("|---|" + "---|" * len(cols))
    for key in ("examples", "kernel_examples", "examples_per_second", "distinct_behaviours",
                "elapsed_seconds", "hypothesis_profile"):
        out.append(f"| {key} | " + " | ".join(str(r.get(key, "")) for r in reports) + " |")
    families = sorted({f for r in reports for f in r["families"]})
    for fam in families:
        out += ["", f"## {fam}", ""]
        out.append("| behaviour | " + " | ".join(cols) + " |")
        out.append("|---|" + "---|" * len(cols))
        behaviours = sorted({b for r in reports for b in r["families"].get(fam, {})
                             .get("behaviours", {})})
        for b in behaviours:
            cells = [str(r["families"].get(fam, {}).get("behaviours", {}).get(b, "—"))
                     for r in reports]
            out.append(f"| {b} | " + " | ".join(cells) + " |")
        for r, col in zip(reports, cols, strict=True):
            f = r["families"].get(fam)
            if not f:
                continue
            for n in f.get("notes", []):
                out.append(f"\n_{col}_: {n}")
            tried = f.get("tried", [])[:6]
            if tried:
                out.append(f"\nExamples tried on {col}:\n")
                for t in tried:
                    out.append(
                        f"- `{json.dumps(t['input'])}` → {t['outcome']}: {t['behaviour']}"
                        + (f" (read back `{t['readback']}`)" if t["readback"] is not None else "")
                    )
    return "\n".join(out) + "\n"


def results_dir() -> Path:
    return Path(os.environ.get("SKIFF_RESULTS_DIR", "results"))


def placeholder(kernel: str, cgroup_version: str) -> dict:
    """An empty column for a kernel whose run has not been recorded yet."""
    return {"kernel": kernel, "cgroup_version": cgroup_version, "families": {},
            "examples": "pending", "kernel_examples": "pending",
            "examples_per_second": "pending", "distinct_behaviours": "pending",
            "elapsed_seconds": "pending", "hypothesis_profile": "ci"}


OBSERVED = "## Observed (ci profile)"


def update_doc(doc: Path, reports: list[dict]) -> None:
    """Rewrite the generated part of docs/kernel-behaviour.md (after OBSERVED) for `reports`
    (one column each): how the VM harness fills in the VM's column."""
    text = doc.read_text()
    head = text[: text.index(OBSERVED)] if OBSERVED in text else text + "\n"
    tables = markdown(reports).split("\n", 2)[2].replace("\n## ", "\n### ")
    doc.write_text(head + OBSERVED + "\n\n" + tables.lstrip("\n"))


if __name__ == "__main__":
    # python -m tests.property.kernel_report [--doc docs/kernel-behaviour.md]
    #     A.json [B.json | pending:KERNEL:V] ...
    args = sys.argv[1:]
    doc_path = None
    if args[:1] == ["--doc"]:
        doc_path, args = Path(args[1]), args[2:]
    docs = []
    for arg in args:
        if arg.startswith("pending:"):
            _, kernel, version = arg.split(":", 2)
            docs.append(placeholder(kernel, version))
        else:
            docs.append(json.loads(Path(arg).read_text()))
    if doc_path is not None:
        update_doc(doc_path, docs)
    else:
        sys.stdout.write(markdown(docs))

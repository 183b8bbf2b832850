"""Tables, human units and a small Go-template subset for `--format`.

Supported template forms (what people actually type with docker): `{{.Field}}`,
`{{.A.B}}`, `{{json .}}`, `{{json .Field}}`, `{{.}}`, `{{index .Map "key"}}`,
`{{upper .F}}`, `{{lower .F}}`, `{{len .F}}`, `{{join .F ","}}`, a leading `table` (adds a
header row) and `\\t`/`\\n` escapes.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

from engine.timefmt import human_duration

_ACTION = re.compile(r"{{-?\s*(.*?)\s*-?}}")


def _scaled(n: float, base: float, units: tuple[str, ...], digits: int) -> str:
    n = float(n or 0)
    for unit in units[:-1]:
        if abs(n) < base:
            return f"{n:.{digits}g}{unit}"
        n /= base
    return f"{n:.{digits}g}{units[-1]}"


def human_size(n: float) -> str:
    """docker's units.HumanSize: decimal units, 3 significant digits."""
    return _scaled(n, 1000.0, ("B", "kB", "MB", "GB", "TB", "PB", "EB"), 3)


def bytes_size(n: float) -> str:
    """docker's units.BytesSize (memory in `docker stats`): binary units, 4 significant digits."""
    return _scaled(n, 1024.0, ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"), 4)


def ago(ts: float) -> str:
    return human_duration(time.time() - ts) + " ago" if ts else ""


def _lookup(obj: Any, path: str) -> Any:
    if path in ("", "."):
        return obj
    cur = obj
    for part in path.lstrip(".").split("."):
        if isinstance(cur, dict):
            cur = cur.get(part)
        else:
            cur = getattr(cur, part, None)
        if cur is None:
            return None
    return cur


def _go(v: Any) -> str:
    """Go's default %v rendering of JSON-ish values."""
    if v is None:
        return "<no value>"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, dict):
        return "map[" + " ".join(f"{k}:{_go(x)}" for k, x in sorted(v.items())) + "]"
    if isinstance(v, list):
        return "[" + " ".join(_go(x) for x in v) + "]"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def _args(expr: str) -> list[str]:
    return re.findall(r'"(?:[^"\\]|\\.)*"|\S+', expr)


def _eval(expr: str, obj: Any) -> Any:
    toks = _args(expr)
    if not toks:
        return ""

    def val(t: str) -> Any:
        if t.startswith('"'):
            return json.loads(t)
        if t.startswith("."):
            return _lookup(obj, t)
        if t.lstrip("-").isdigit():
            return int(t)
        return t

    fn = toks[0]
    if fn.startswith(".") or fn.startswith('"'):
        return val(fn)
    a = [val(t) for t in toks[1:]]
    if fn == "json":
        return json.dumps(a[0] if a else obj)
    if fn == "index" and len(a) >= 2:
        cur = a[0]
        for k in a[1:]:
            try:
                cur = cur[k]
            except (KeyError, IndexError, TypeError):
                return None
        return cur
    if fn == "upper":
        return _go(a[0]).upper()
    if fn == "lower":
        return _go(a[0]).lower()
    if fn == "title":
        return _go(a[0]).title()
    if fn == "len":
        return len(a[0] or [])
    if fn == "join" and len(a) == 2:
        return a[1].join(_go(x) for x in (a[0] or []))
    if fn == "println":
        return " ".join(_go(x) for x in a) + "\n"
    if fn == "printf" and a:
        try:
            return a[0].replace("%s", "{}").replace("%v", "{}").replace("%d", "{}").format(
                *(_go(x) for x in a[1:]))
        except (IndexError, ValueError):
            return a[0]
    if fn == "truncate" and len(a) == 2:
        return _go(a[0])[: int(a[1])]
    raise ValueError(f"template: function {fn!r} not defined")


def render(template: str, obj: Any) -> str:
    template = template.replace("\\t", "\t").replace("\\n", "\n")

    def sub(m: re.Match[str]) -> str:
        v = _eval(m.group(1), obj)
        return v if isinstance(v, str) else _go(v)

    return _ACTION.sub(sub, template)


def table_header(template: str) -> str:
    """The header row of a `table ...` template: field names upper-cased docker-style."""
    names = {"ID": "CONTAINER ID", "RunningFor": "CREATED", "CreatedSince": "CREATED",
             "CreatedAt": "CREATED AT", "Names": "NAMES", "Repository": "REPOSITORY"}
    template = template.replace("\\t", "\t").replace("\\n", "\n")

    def sub(m: re.Match[str]) -> str:
        toks = _args(m.group(1))
        field = next((t for t in toks if t.startswith(".")), ".")
        key = field.lstrip(".").split(".")[-1] or "VALUE"
        return names.get(key, re.sub(r"(?<=[a-z])(?=[A-Z])", " ", key).upper())

    return _ACTION.sub(sub, template)


def format_rows(fmt: str | None, rows: list[dict], default_cols: list[tuple[str, str]]) -> str:
    """docker's list output: a default aligned table, `table TEMPLATE`, or raw TEMPLATE/json."""
    if fmt == "json":
        return "\n".join(json.dumps(r) for r in rows)
    if fmt:
        if fmt.startswith("table"):
            tpl = fmt[len("table"):].strip()
            lines = [table_header(tpl)] + [render(tpl, r) for r in rows]
            return align(lines) if "\t" in tpl or "\\t" in tpl else "\n".join(lines)
        return "\n".join(render(fmt, r) for r in rows)
    lines = ["\t".join(h for h, _ in default_cols)]
    lines += ["\t".join(str(r.get(k, "")) for _, k in default_cols) for r in rows]
    return align(lines)


def align(lines: list[str], pad: int = 3) -> str:
    """Tab-separated cells -> columns (like Go's tabwriter with padding 3)."""
    cells = [ln.split("\t") for ln in lines]
    widths: list[int] = []
    for row in cells:
        for i, c in enumerate(row[:-1]):
            if i >= len(widths):
                widths.append(0)
            widths[i] = max(widths[i], len(c))
    out = []
    for row in cells:
        out.append("".join(c.ljust(widths[i] + pad) if i < len(row) - 1 else c
                           for i, c in enumerate(row)).rstrip())
    return "\n".join(out)

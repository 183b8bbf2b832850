"""JSON through the `_json` C accelerator alone, for the container start path.

`import json` imports `re` and compiles six regular expressions (json.decoder/encoder): about
8 ms of CPU per `skiff-runc` start, more than parsing and writing every JSON document of a
container start. The C scanner and encoder behind `json` need none of that. Anything the fast
path does not handle (an error message, indent) goes to the real `json` module.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

try:
    import _json
except ImportError:  # pragma: no cover - CPython always has it
    _json = None  # type: ignore[assignment]


class _Ctx:
    """The attributes c_make_scanner reads from a JSONDecoder."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    memo: dict = {}

    @staticmethod
    def parse_constant(name: str) -> float:
        return {"-Infinity": float("-inf"), "Infinity": float("inf"), "NaN": float("nan")}[name]


_scanner = _json.make_scanner(_Ctx()) if _json is not None else None  # type: ignore[arg-type]
_WS = " \t\n\r"


def loads(s: str | bytes) -> Any:
    if isinstance(s, (bytes, bytearray)):
        s = s.decode("utf-8-sig" if s[:3] == b"\xef\xbb\xbf" else "utf-8")
    if _scanner is not None:
        try:
            i = 0
            n = len(s)
            while i < n and s[i] in _WS:
                i += 1
            obj, end = _scanner(s, i)
            while end < n and s[end] in _WS:
                end += 1
            if end == n:
                return obj
        except Exception:  # noqa: BLE001 - the json module reports the error properly
            pass
    import json

    return json.loads(s)


def _default(o: object) -> object:
    raise TypeError(f"Object of type {type(o).__name__} is not JSON serializable")


def dumps(obj: object, *, sort_keys: bool = False, compact: bool = False) -> str:
    if _json is not None:
        enc = _json.make_encoder(None, _default, _json.encode_basestring_ascii, None,
                                 ":" if compact else ": ", "," if compact else ", ",
                                 sort_keys, False, True)
        return "".join(enc(obj, 0))
    import json

    seps = (",", ":") if compact else (", ", ": ")
    return json.dumps(obj, sort_keys=sort_keys, separators=seps)

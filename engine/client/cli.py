"""`skiff`: the client (implemented with the daemon issue)."""

import sys


def main(argv: list[str] | None = None) -> int:
    print("skiff: not implemented yet", file=sys.stderr)
    return 125

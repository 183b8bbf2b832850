"""`skiffd`: the daemon (implemented with the daemon issue)."""

import sys


def main(argv: list[str] | None = None) -> int:
    print("skiffd: not implemented yet", file=sys.stderr)
    return 1

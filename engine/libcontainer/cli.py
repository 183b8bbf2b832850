"""`skiff-runc`: the OCI runtime command line over libcontainer."""

import sys


def main(argv: list[str] | None = None) -> int:
    print("skiff-runc: not implemented yet", file=sys.stderr)
    return 1

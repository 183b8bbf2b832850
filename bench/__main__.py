"""`python -m bench NAME [ARGS]` runs bench/NAME.py's main(argv); no NAME lists them."""

import importlib
import pkgutil
import sys
from pathlib import Path


def main() -> int:
    names = sorted(
        m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)])
        if m.name not in ("common", "__main__")
    )
    if len(sys.argv) < 2 or sys.argv[1] not in names:
        print("usage: python -m bench NAME [ARGS]\nbenchmarks: " + ", ".join(names))
        return 2
    mod = importlib.import_module(f"bench.{sys.argv[1]}")
    return int(mod.main(sys.argv[2:]) or 0)


sys.exit(main())

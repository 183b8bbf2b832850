import argparse
from pathlib import Path

from . import busybox

ap = argparse.ArgumentParser(prog="python -m tests.images", description=__doc__)
ap.add_argument("image", choices=["busybox"])
ap.add_argument("--cache", type=Path, default=busybox.DEFAULT_CACHE)
args = ap.parse_args()
print(busybox.build(args.cache))

"""Images and layers: the graph (SQLite metadata + content-addressed blobs + a graphdriver)."""

from .graph import Graph
from .image import Image, chain_ids

__all__ = ["Graph", "Image", "chain_ids"]

"""Skiff: a container engine in Python following Docker's classic architecture."""

__version__ = "0.1.0"
API_VERSION = "1.44"
MIN_API_VERSION = "1.24"

"""Reproducible test images built from Debian packages, with no registry.

`python -m tests.images busybox` prints the directory holding the busybox image as a rootfs,
an OCI bundle, an OCI image layout and a `docker save` tarball; see builder.py.
"""

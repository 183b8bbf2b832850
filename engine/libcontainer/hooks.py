"""OCI hooks: a hook is an executable run with the container's state JSON on stdin.

Where each one runs (runtime-spec "Lifecycle"; the same places as runc):
- prestart, createRuntime: by the runtime, in its own namespaces, after `create` made the
  container (Container._create);
- createContainer: by the container's init, in the container's namespaces after its mounts
  and before pivot_root, so the path resolves on the host (rootfs.setup);
- startContainer: by the init after `start` opened the exec fifo, just before execve of the
  user process, with the process's user, capabilities and seccomp filter: the path resolves
  inside the container (process.init_stage2);
- poststart, poststop: by the runtime (Container.start / delete); failures only warn.
"""

from __future__ import annotations

import os
import subprocess

from . import fastjson as json
from .errors import SystemError_


def run_hooks(name: str, hooks: list[dict], state: dict, fatal: bool) -> None:
    """Run `hooks` in order; the first failure raises (fatal) or is printed as a warning."""
    data = json.dumps(state).encode()
    for i, h in enumerate(hooks):
        env = dict(e.split("=", 1) for e in h.get("env") or [] if "=" in e)
        try:
            r = subprocess.run(h.get("args") or [h["path"]], executable=h["path"], input=data,
                               env=env, capture_output=True, timeout=h.get("timeout"))
            err = f"exit status {r.returncode}: {r.stderr.decode(errors='replace').strip()}" \
                if r.returncode else ""
        except (OSError, subprocess.TimeoutExpired) as e:
            err = str(e)
        if err:
            msg = f"{name} hook #{i} ({h['path']}) failed: {err}"
            if fatal:
                raise SystemError_(msg)
            os.write(2, f"skiff-runc: warning: {msg}\n".encode())


def in_container(name: str, spec_hooks: dict, state: dict) -> None:
    """createContainer/startContainer from inside the init: the pid is the init's own, as the
    container sees it (runc does the same)."""
    hooks = spec_hooks.get(name) or []
    if hooks:
        run_hooks(name, hooks, {**state, "pid": os.getpid()}, fatal=True)

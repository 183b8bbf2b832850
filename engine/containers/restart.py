"""Restart policies with docker's backoff (moby restartmanager): 100 ms doubling to 1 min,
reset when a run lasted 10 s or more."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_TIMEOUT = 0.1
MAX_TIMEOUT = 60.0
RESET_AFTER = 10.0


@dataclass
class RestartManager:
    name: str = "no"  # no | always | on-failure | unless-stopped
    max_retries: int = 0
    restart_count: int = 0
    timeout: float = 0.0  # the last backoff used; 0 before the first restart

    @classmethod
    def from_host_config(cls, hc: dict, restart_count: int = 0, timeout: float = 0.0
                         ) -> RestartManager:
        rp = hc.get("RestartPolicy") or {}
        return cls(rp.get("Name") or "no", rp.get("MaximumRetryCount") or 0, restart_count,
                   timeout)

    def should_restart(self, exit_code: int, manually_stopped: bool, ran_for: float
                       ) -> tuple[bool, float]:
        """(restart?, delay in seconds). Counts the restart when it says yes."""
        if self.name in ("", "no") or manually_stopped:
            return False, 0.0
        if ran_for >= RESET_AFTER:
            self.timeout = 0.0
        if self.timeout == 0.0:
            self.timeout = DEFAULT_TIMEOUT
        elif self.timeout < MAX_TIMEOUT:
            self.timeout *= 2
        self.timeout = min(self.timeout, MAX_TIMEOUT)
        if self.name in ("always", "unless-stopped"):
            restart = True
        elif self.name == "on-failure":
            restart = exit_code != 0 and (
                self.max_retries == 0 or self.restart_count < self.max_retries
            )
        else:
            restart = False
        if not restart:
            return False, 0.0
        self.restart_count += 1
        return True, self.timeout

    def restart_on_daemon_start(self, manually_stopped: bool, was_running: bool) -> bool:
        """dockerd restarts always/unless-stopped containers that were running at shutdown."""
        if manually_stopped:
            return False
        return self.name in ("always", "unless-stopped") and was_running

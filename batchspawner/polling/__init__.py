"""Shared pollers: one background query per scheduler endpoint, read by many spawners and pages.

:mod:`batchspawner.polling.base` holds the one base (registry, clock, backoff, shutdown); its
uses live where their callers import them: :mod:`batchspawner.polling.status` (job states),
:mod:`batchspawner.hub.sessions` (session-card details), :mod:`batchspawner.polling.cluster` (partition facts
for the form), :mod:`wrapspawner.containers` (container images).
"""

from batchspawner.polling.base import REAL_CLOCK, Clock, ManualClock, SharedPoller, hook_hub_cleanup, stop_all, stop_all_nowait

__all__ = ["Clock", "ManualClock", "REAL_CLOCK", "SharedPoller", "hook_hub_cleanup", "stop_all", "stop_all_nowait"]

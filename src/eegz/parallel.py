"""How many threads one eegz run may use: the cores this process may run on, or EEGZ_THREADS when a batch
gives each of its workers a share (so that N workers never oversubscribe the machine's cores)."""
from __future__ import annotations

import os

THREADS_ENV = "EEGZ_THREADS"


def cpu_budget() -> int:
    value = os.environ.get(THREADS_ENV, "")
    if value.isdigit() and int(value) > 0:
        return int(value)
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not Linux
        return os.cpu_count() or 1

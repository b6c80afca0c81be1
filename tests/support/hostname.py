"""Airflow's ``[core] hostname_callable`` for system tests: each component reports its own name.

A deployment started with ``name_hosts=True`` sets ``ABP_PROCESS_NAME`` for every component
(``worker-1``, ``triggerer-2``...) and points ``hostname_callable`` here, so a task instance's
``hostname`` and a job's ``hostname`` say which process ran it, on one machine.
"""

from __future__ import annotations

import os
import socket


def process_hostname() -> str:
    """The component's name, else the machine's fully qualified name (Airflow's default)."""
    return os.environ.get("ABP_PROCESS_NAME") or socket.getfqdn()

"""``durably demo``: a workflow survives the SIGKILL of its process.

The demo runs a four-step order workflow in a worker process (``python -m durably.demo
worker ...``), watches the database until step 2 is recorded, kills the worker with
SIGKILL in the middle of step 3, and starts a new worker with the same executor ID. That
worker recovers the workflow at once: steps 1-2 are replayed from their records (not run
again) and the workflow finishes from step 3. Every step records the PID of the process
that ran it, so the final table shows, from the database, which process did what.

Modules: ``run`` (:func:`run_demo`, the ``durably demo`` process), ``workflows`` (the
order workflow and its steps), ``worker`` (the worker process), ``children`` (starting,
relaying, waiting on and killing worker processes) and ``narration`` (what it prints).
"""

from __future__ import annotations

from durably.demo.run import run_demo

__all__ = ["run_demo"]

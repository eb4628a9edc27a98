"""The chaos suite of durably: real workers, a real PostgreSQL, faults injected, invariants checked.

``python -m chaos run`` starts a PostgreSQL cluster of its own, a few worker processes and
a driver that starts workflows of every shape while it kills, stops, disconnects and
restarts things; then it drains, checks the invariants of durably's contract against the
database and a table of side effects, and prints figures. ``python -m chaos selftest``
proves that every check can fail. See docs/chaos.md.

Modules, one job each: ``config`` (settings), ``pg`` (the cluster), ``retry`` (database
access through outages), ``tables`` (the suite's own schema), ``shapes`` (what to start and
what it must return), ``workload`` (the workflows), ``ledger`` (the workflows of
transaction steps), ``effects`` (side effects of step bodies), ``lostreply`` and
``control`` (worker-side fault switch), ``worker`` (the worker process), ``fleet`` (worker
processes), ``plan`` and ``inject`` (faults), ``load`` (the driver's starts), ``drain``,
``snapshot``, ``checks``, ``checks_time``, ``checks_comm`` and ``checks_ledger``
(invariants), ``progress`` (time from fault to progress), ``report``, ``run`` and
``selftest``.
"""

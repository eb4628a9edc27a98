"""Performing the faults of the plan, and the record of each: when it started and ended,
its target, and which workflows were in flight (to measure how long they took to
progress again)."""

# SQL here names the suite's schemas, module constants (never input).
# ruff: noqa: S608

from __future__ import annotations

import logging
import os
import random
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from chaos.config import CHAOS_SCHEMA, WF_SCHEMA
from chaos.control import Switches
from chaos.fleet import Fleet
from chaos.pg import Cluster
from chaos.plan import Action
from chaos.replica import Pair
from chaos.retry import Conn, GaveUp

log = logging.getLogger("chaos.inject")
_TICK = os.sysconf("SC_CLK_TCK")
# An aimed kill or stop waits at most this long for its victim to open a transaction step.
AIM_WAIT = 2.0
# A worker's backend inside a transaction step of the ledger workload: its transaction is
# open and its last statement touched the ledger (the counter, or the ledger itself).
_OPEN_STEP = (
    "xact_start IS NOT NULL AND state IN ('active', 'idle in transaction') AND query LIKE %s"
)
_LEDGER_QUERY = f"%{CHAOS_SCHEMA}.ledger%"


def in_transaction_step(state: str | None, query: str | None) -> bool:
    """Whether a backend (its pg_stat_activity state and query) is inside a transaction
    step, as ``_OPEN_STEP`` tells it in SQL."""
    return state in ("active", "idle in transaction") and f"{CHAOS_SCHEMA}.ledger" in (query or "")


@dataclass
class FaultRecord:
    kind: str
    t_start: float  # time.time()
    t_end: float  # the fault's end: server back, process killed/resumed, link cut
    target: str = ""
    pid: int | None = None  # the stopped or killed process
    detail: dict[str, Any] = field(default_factory=dict)
    inflight: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU time of a process so far."""
    if pid is None:
        return None
    try:
        raw = open(f"/proc/{pid}/stat", "rb").read()  # noqa: SIM115
        fields = raw[raw.rindex(b")") + 2 :].split()
        return (int(fields[11]) + int(fields[12])) / _TICK
    except (OSError, ValueError, IndexError):
        return None


class Injector:
    def __init__(
        self, cluster: Cluster | Pair, fleet: Fleet, switches: Switches, conn: Conn
    ) -> None:
        self.cluster = cluster
        self.fleet = fleet
        self.switches = switches
        self.conn = conn
        self.records: list[FaultRecord] = []
        self._window: FaultRecord | None = None  # an open lost-reply window

    def inflight(self, executor_id: str | None = None) -> list[str]:
        """Workflows running on an executor now (all executors when None)."""
        sql = f"SELECT id FROM {WF_SCHEMA}.workflows WHERE status = 'PENDING' AND executor_id "
        sql += "IS NOT NULL" if executor_id is None else "= %s"
        try:
            rows = self.conn.query(sql, None if executor_id is None else (executor_id,),
                                   time.monotonic() + 3)  # fmt: skip
        except GaveUp:
            return []
        return sorted(r[0] for r in rows)

    def open_steps(self, index: int | None = None) -> int | None:
        """How many transaction steps worker ``index`` (all workers when None) has open
        right now (None: could not tell)."""
        app = "chaos-worker-%" if index is None else f"chaos-worker-{index}"
        sql = f"""SELECT count(*) FROM pg_stat_activity
                  WHERE datname = current_database() AND application_name LIKE %s
                    AND {_OPEN_STEP}"""
        try:
            rows = self.conn.query(sql, (app, _LEDGER_QUERY), time.monotonic() + 3)
            return int(rows[0][0])
        except GaveUp:
            return None

    def _aim(self, index: int | None, params: dict[str, Any]) -> dict[str, Any]:
        """For an aimed fault: wait (up to AIM_WAIT s) until worker ``index`` (any worker
        when None) has a transaction step open. Returns what the fault's record notes."""
        if not params.get("aim"):
            return {"open_transaction_steps": self.open_steps(index)}
        began = time.monotonic()
        while True:
            n = self.open_steps(index)
            if n or time.monotonic() - began > AIM_WAIT:
                waited = round(time.monotonic() - began, 3)
                return {"aimed": True, "aim_waited": waited, "open_transaction_steps": n}
            time.sleep(0.01)

    def perform(self, action: Action) -> None:
        kind = action.kind
        log.info("fault %s %s", kind, action.params)
        if kind == "lost_reply_on":
            if self._window is None:
                now = time.time()
                inflight = self.inflight()
                self._window = FaultRecord("lost_reply", now, now, "workers", None, {}, inflight)
                self.switches.set(lost_reply=True)
            return
        if kind == "lost_reply_off":
            self.close_window()
            return
        if kind == "lost_reply_extra":
            self._lost_reply_extra(action.params)
            return
        record = getattr(self, f"_{kind}")(action.params)
        if record is not None:
            self.records.append(record)

    def close_window(self) -> None:
        if self._window is not None:
            self.switches.set(lost_reply=False, cron=True)
            self._window.t_end = time.time()
            self.records.append(self._window)
            self._window = None

    def _lost_reply_extra(self, params: dict[str, Any]) -> None:
        """Within a lost-reply window, what runs rarely: a graceful restart of a worker
        (shutdown and launch statements) or a pause and resume of the cron schedule."""
        if self._window is None:
            return
        notes = self._window.detail.setdefault("extras", [])
        if params["what"] == "restart":
            index = self._victim(params["victim"])
            if index is not None:
                self.fleet.restart_graceful(index)
                notes.append(f"graceful restart of worker-{index}")
        elif params["what"] == "cron_off":
            self.switches.set(cron=False)
            notes.append("cron paused")
        elif params["what"] == "cron_on":
            self.switches.set(cron=True)
            notes.append("cron resumed")

    def _victim(self, wanted: int) -> int | None:
        running = self.fleet.running()
        if not running:
            return None
        return min(running, key=lambda i: (i - wanted) % len(self.fleet.slots))

    def _sigkill(self, params: dict[str, Any]) -> FaultRecord | None:
        index = self._victim(params["victim"])
        if index is None:
            return None
        slot = self.fleet.slots[index]
        old, pid = slot.executor_id, slot.pid
        aim = self._aim(index, params)
        inflight = self.inflight(old)
        start = time.time()
        end = self.fleet.kill(index)
        self.fleet.restart(index, same_id=bool(params["same_id"]))
        detail = {
            "executor": old,
            "restarted_as": slot.executor_id,
            "same_id": bool(params["same_id"]),
            "ready_after": round(time.time() - end, 3),
            **aim,
        }
        return FaultRecord("sigkill", start, end, f"worker-{index}", pid, detail, inflight)

    def _sigstop(self, params: dict[str, Any]) -> FaultRecord | None:
        index = self._victim(params["victim"])
        if index is None:
            return None
        slot = self.fleet.slots[index]
        aim = self._aim(index, params)
        inflight = self.inflight(slot.executor_id)
        before = time.time()
        stopped = self.fleet.stop(index)
        time.sleep(float(params["hold"]))
        end = self.fleet.cont(index)
        detail = {"executor": slot.executor_id, "hold": params["hold"], "stopped_at": stopped,
                  **aim}  # fmt: skip
        return FaultRecord("sigstop", before, end, f"worker-{index}", slot.pid, detail, inflight)

    def _pg_restart(self, params: dict[str, Any]) -> FaultRecord:
        aim = self._aim(None, params)
        start = time.time()
        inflight = self.inflight()
        pids = {s.index: s.pid for s in self.fleet.slots if s.alive()}
        cpu_before = {i: cpu_seconds(p) for i, p in pids.items()}
        self.cluster.crash()
        down = time.time()
        time.sleep(float(params["downtime"]))
        self.cluster.start()
        end = time.time()
        cpu = {}
        for i, pid in pids.items():
            before, after = cpu_before[i], cpu_seconds(pid)
            if before is not None and after is not None:
                cpu[f"worker-{i}"] = round(100 * (after - before) / max(end - down, 1e-3), 1)
        detail = {"downtime": params["downtime"], "down_for": round(end - down, 3),
                  "worker_cpu_pct_while_down": cpu, **aim}  # fmt: skip
        return FaultRecord("pg_restart", start, end, "postgres", None, detail, inflight)

    def _failover(self, params: dict[str, Any]) -> FaultRecord:
        """The primary crashes and its synchronous standby is promoted (the fault's end);
        then the old primary is rebuilt as the new standby, so that it can happen again."""
        pair = self.cluster
        assert isinstance(pair, Pair), "a failover needs a standby (chaos.replica.Pair)"
        aim = self._aim(None, params)
        start = time.time()
        inflight = self.inflight()
        crashed = pair.primary.root.name
        pair.fail_over()
        end = time.time()
        pair.rebuild()
        detail = {"crashed": crashed, "promoted": pair.primary.root.name,
                  "promoted_after": round(end - start, 3),
                  "standby_rebuilt_in": round(time.time() - end, 3), **aim}  # fmt: skip
        return FaultRecord("failover", start, end, "postgres", None, detail, inflight)

    def _terminate(self, params: dict[str, Any]) -> FaultRecord:
        aim = self._aim(None, params)
        start = time.time()
        inflight = self.inflight()
        rows = self.conn.query(
            """SELECT pid, application_name, left(query, 60), state FROM pg_stat_activity
               WHERE datname = current_database() AND backend_type = 'client backend'
                 AND pid <> pg_backend_pid()
                 AND (application_name LIKE 'chaos-worker-%' OR application_name = 'chaos-client')
               ORDER BY pid"""
        )
        rng = random.Random(params["pick"])
        count = max(1, round(len(rows) * float(params["fraction"]))) if rows else 0
        chosen = rng.sample(rows, min(count, len(rows)))
        listeners = [r for r in rows if str(r[2]).upper().startswith("LISTEN")]
        if params["listen"] and listeners and not any(r in chosen for r in listeners):
            chosen.append(rng.choice(listeners))
        in_steps = [r for r in rows if in_transaction_step(r[3], r[2])]
        if aim.get("aimed") and in_steps and not any(r in chosen for r in in_steps):
            chosen.append(rng.choice(in_steps))
        for row in chosen:
            self.conn.query("SELECT pg_terminate_backend(%s)", (row[0],))
        end = time.time()
        detail = {"candidates": len(rows),
                  "terminated": [{"pid": r[0], "app": r[1], "query": r[2], "state": r[3]}
                                 for r in chosen],
                  **aim,
                  "open_transaction_steps": sum(in_transaction_step(r[3], r[2])
                                                for r in chosen)}  # fmt: skip
        return FaultRecord("terminate", start, end, "backends", None, detail, inflight)

"""examples/kafka_exactly_once: a consumer of a mock Kafka broker (a process of its own,
which outlives the consumer) SIGKILLed after some payments were booked, more payments
produced while no consumer runs, then the consumer started again: every payment booked
once in the bank's table, each receipt sent once, an account's payments booked in order,
and every message's workflow finished."""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from typing import Any

from examples_harness import lines, rows, wait_for_lines

TOTAL = 200


def test_kafka_payments_are_booked_exactly_once_across_a_consumer_kill(
    example: Any, pg_url: str, schema: str, own_schema: str
) -> None:
    ex = example("kafka_exactly_once", BANK_SCHEMA=own_schema)
    receipts = ex.workdir / "receipts.ledger"

    broker = ex.start("main.py", "broker", log="broker")
    ex.wait_for_output("broker: ", log="broker")
    found = re.search(r"^broker: (\S+)$", ex.output("broker"), re.MULTILINE)
    assert found, ex.output("broker")
    bootstrap = found[1]
    ex.run("main.py", "produce", "-b", bootstrap, "--count", "150", log="produce")

    first = ex.start("main.py", "consume", "-b", bootstrap, log="first")
    wait_for_lines(receipts, 30)
    ex.kill(first)
    assert len(lines(receipts)) < 150, "every payment was booked before the kill"

    # Payments that arrive while no consumer runs wait in Kafka for the next one.
    ex.run("main.py", "produce", "-b", bootstrap, "--first", "150", "--count", "50", log="produce")
    out = ex.run("main.py", "consume", "-b", bootstrap, log="second")
    assert f"{TOTAL}/{TOTAL} payments booked" in out, out
    assert f"entries: {TOTAL} rows for {TOTAL} payments" in out, out

    # The bank's table has no unique constraint: one row per payment is the transaction
    # step's doing, the row committed with the step's checkpoint.
    entries = rows(
        pg_url, own_schema, "SELECT payment, account, cents, message FROM entries ORDER BY seq"
    )
    payments = [f"p-{n:04d}" for n in range(TOTAL)]
    assert Counter(e[0] for e in entries) == dict.fromkeys(payments, 1)
    # Each row was written by the workflow of its message: one message, one payment.
    assert len({e[3] for e in entries}) == TOTAL
    assert all(e[3].startswith("kafka:bank-ledger:payments:") for e in entries)

    # ordered=True: an account's payments (one partition) were booked in offset order,
    # which is the order they were produced in, across the kill too.
    by_account: dict[str, list[str]] = defaultdict(list)
    for payment, account, _, _ in entries:
        by_account[account].append(payment)
    assert len(by_account) == 8
    assert all(booked == sorted(booked) for booked in by_account.values()), by_account

    # Balances are the sums of the entries.
    sums: Counter[str] = Counter()
    for _, account, cents, _ in entries:
        sums[account] += cents
    assert dict(rows(pg_url, own_schema, "SELECT account, cents FROM balances")) == sums

    # The mailer sent one receipt per payment (its key makes a repeated request a no-op),
    # each with the balance right after that payment: the recorded result of `book`.
    sent = [line.split() for line in lines(receipts)]
    assert Counter(fields[0] for fields in sent) == dict.fromkeys(payments, 1)
    running: Counter[str] = Counter()
    expected = {}
    for payment, account, cents, _ in entries:
        running[account] += cents
        expected[payment] = f"balance={running[account]}"
    assert {fields[0]: fields[3] for fields in sent} == expected
    requests = lines(ex.workdir / "receipt_requests.ledger")
    assert len(requests) >= TOTAL  # at least once; a step cut by the kill may ask again

    # Every message's workflow finished, once.
    statuses = rows(
        pg_url, schema, "SELECT status, count(*) FROM workflows WHERE name = 'book_payment' "
        "GROUP BY status",
    )  # fmt: skip
    assert statuses == [("SUCCESS", TOTAL)]
    ex.kill(broker)

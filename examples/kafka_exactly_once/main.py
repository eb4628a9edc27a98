"""Kafka payments booked exactly once: durably's Kafka consumer turns each message of the
topic ``payments`` into a workflow that books the payment in the bank's own table (a
transaction step: the row commits with the step's checkpoint) and mails a receipt (a
plain step whose idempotency key makes the mailer send it once).

    python main.py                  a mock broker in this process, 200 payments, all booked
    python main.py broker           only the mock broker: prints its address, runs until killed
    python main.py produce -b HOST:PORT [--first N] [--count N]
    python main.py consume -b HOST:PORT [--until N]     book until N payments are done
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from dataclasses import dataclass

import bank
import broker
import psycopg
import receipts

import durably

TOTAL = 200
GROUP = "bank-ledger"

# A fixed executor ID: a consumer restarted after a crash takes its own unfinished
# workflows back at once instead of waiting for their lease to expire.
app = durably.App(executor_id="bank-ledger-1")


@dataclass(frozen=True)
class Payment:
    id: str
    account: str
    cents: int


def decode(value: bytes | None) -> Payment:
    """A message's value as a Payment. A value that is not one raises, and the consumer
    dead-letters its message (a workflow in ERROR saying why) instead of booking it."""
    if value is None:
        raise ValueError("a message without a value")
    return Payment(**json.loads(value))


def say(line: str) -> None:
    sys.stdout.write(line + "\n")  # one write per line: workflows run side by side


@app.transaction()
def create_tables(conn: psycopg.Connection) -> None:
    bank.create(conn)


@app.transaction(isolation="read committed")
def book(conn: psycopg.Connection, payment: Payment) -> int:
    """The entry and the account's new balance, committed with this step's checkpoint:
    exactly once, however the consumer dies. Returns the new balance."""
    return bank.post(conn, payment.id, payment.account, payment.cents, durably.workflow_id())


@app.transaction(isolation="read committed")
def report(conn: psycopg.Connection) -> list[str]:
    return bank.report(conn)


@app.step(retries=5, interval=0.2)
def send_receipt(payment: Payment, balance: int) -> None:
    """An outside call, so at least once; its key (the same on every run) makes it once."""
    text = f"{payment.id} {payment.account} +{payment.cents} balance={balance}"
    receipts.send(durably.step_key(), text)


@app.workflow(name="book_payment")
def book_payment(payment: Payment) -> int:
    balance = book(payment)
    send_receipt(payment, balance)
    say(f"{durably.workflow_id()}: {payment.id} {payment.account} +{payment.cents / 100:.2f}"
        f" -> {balance / 100:.2f}")  # fmt: skip
    return balance


def consume(bootstrap: str, until: int) -> None:
    """Book payments from the topic until ``until`` of them are done."""
    config = {
        "bootstrap.servers": bootstrap,
        "group.id": GROUP,
        # A killed consumer's partitions move to its restart within seconds.
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 500,
        "fetch.wait.max.ms": 20,  # the mock broker holds an empty fetch this long
        "log_level": 3,
    }
    # ordered: an account's payments (one partition, by key) are booked in offset order.
    payments = app.kafka_consumer(
        config, broker.TOPIC, book_payment, ordered=True, batch_size=50, value_decoder=decode
    )
    with app:
        create_tables()  # outside a workflow: a plain transaction, run each time
        with payments:
            say(f"consuming {broker.TOPIC!r} from {bootstrap} as group {GROUP!r}")
            while (done := len(app.list_workflows(name="book_payment", status="SUCCESS"))) < until:
                say(f"-- {done}/{until} payments booked")
                time.sleep(1.0)
        say(f"{done}/{until} payments booked")
        for line in report():
            say(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", nargs="?", choices=("broker", "produce", "consume"))
    parser.add_argument("-b", "--bootstrap-servers", help="HOST:PORT of the broker")
    parser.add_argument("--first", type=int, default=0, help="produce: first payment number")
    parser.add_argument("--count", type=int, default=TOTAL, help="produce: how many")
    parser.add_argument("--until", type=int, default=TOTAL, help="consume: stop when done")
    args = parser.parse_args()
    if args.mode in ("produce", "consume") and not args.bootstrap_servers:
        parser.error(f"{args.mode} needs --bootstrap-servers (from 'main.py broker')")
    if args.mode == "broker":
        _cluster, bootstrap = broker.start()  # kept: the broker lives as long as it
        say(f"broker: {bootstrap}")
        threading.Event().wait()  # the cluster lives as long as this process
    elif args.mode == "produce":
        broker.produce(args.bootstrap_servers, args.first, args.count)
        say(f"produced payments {args.first}..{args.first + args.count - 1}")
    elif args.mode == "consume":
        consume(args.bootstrap_servers, args.until)
    else:
        # The broker dies with this process; run again, it produces the same payments at
        # the same offsets, so each one's workflow ID names the workflow of the first run.
        _cluster, bootstrap = broker.start()  # kept: the broker lives as long as it
        broker.produce(bootstrap, 0, TOTAL)
        say(f"produced {TOTAL} payments to a mock broker at {bootstrap}")
        consume(bootstrap, TOTAL)


if __name__ == "__main__":
    main()

"""The stand-in for a Kafka cluster: librdkafka's mock cluster (a real Kafka-protocol
broker running inside the process that creates it), and the payment events produced to it."""

from __future__ import annotations

import json

from confluent_kafka import Producer

from durably.kafka import producer

TOPIC = "payments"
# Eight accounts, two on each of the topic's four partitions (the key picks the partition).
ACCOUNTS = ("ada", "hedy", "niklaus", "tim", "donald", "ken", "grace", "linus")


def start() -> tuple[Producer, str]:
    """A one-broker mock cluster living as long as the returned client; its address.
    Its topics are created on first use, with four partitions."""
    cluster = Producer({"test.mock.num.brokers": 1, "log_level": 3})
    broker = next(iter(cluster.list_topics(timeout=10).brokers.values()))
    return cluster, f"{broker.host}:{broker.port}"


def payment(n: int) -> dict[str, object]:
    """Payment number ``n``: the same every time, so a run made again produces the same
    messages at the same offsets."""
    return {"id": f"p-{n:04d}", "account": ACCOUNTS[(n * 3) % 8], "cents": 100 + (n * 7919) % 9900}


def produce(bootstrap: str, first: int, count: int) -> None:
    """Send payments ``first`` .. ``first + count - 1``, keyed by account, and wait for
    the broker to acknowledge every one."""
    out = producer({"bootstrap.servers": bootstrap, "log_level": 3})
    for n in range(first, first + count):
        event = payment(n)
        out.produce(TOPIC, key=str(event["account"]).encode(), value=json.dumps(event).encode())
    if out.flush(30):
        raise RuntimeError("the broker did not acknowledge every payment within 30 s")

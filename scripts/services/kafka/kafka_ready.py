"""Is a Kafka broker answering on BOOTSTRAP? Used by scripts/services/kafka.sh.

    python kafka_ready.py [--bootstrap 127.0.0.1:9092] [--timeout 30] [--roundtrip]

Exit 0 once AdminClient.list_topics() returns metadata with at least one broker (and, with
--roundtrip, once a message went through a fresh topic: create, produce, consume in a group,
commit, delete). Exit 1 with one line on stderr otherwise. Needs confluent-kafka.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid


def wait_metadata(bootstrap: str, timeout: float):
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    # log_level 0: keep librdkafka's "Connection refused" retries out of the output.
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    deadline = time.monotonic() + timeout
    last = "no answer"
    while True:
        try:
            md = admin.list_topics(timeout=min(5.0, max(0.5, deadline - time.monotonic())))
            if md.brokers:
                return admin
            last = "metadata without brokers"
        except KafkaException as e:
            last = str(e.args[0]) if e.args else repr(e)
        if time.monotonic() >= deadline:
            raise TimeoutError(f"no Kafka metadata from {bootstrap} within {timeout:.0f}s ({last})")
        time.sleep(0.25)


def roundtrip(admin, bootstrap: str, timeout: float) -> str:
    from confluent_kafka import Consumer, KafkaException, Producer
    from confluent_kafka.admin import NewTopic

    name = "services-check-" + uuid.uuid4().hex[:8]
    admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=1)], operation_timeout=timeout)[
        name
    ].result()
    try:
        producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
        producer.produce(name, key=b"k", value=b"hello")
        if producer.flush(timeout) != 0:
            raise TimeoutError("produce not acknowledged")
        consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": name,
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
            }
        )
        try:
            consumer.subscribe([name])
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                msg = consumer.poll(0.5)
                if msg is None:
                    continue
                if msg.error():
                    raise KafkaException(msg.error())
                consumer.commit(message=msg, asynchronous=False)
                return msg.value().decode()
            raise TimeoutError("message not consumed")
        finally:
            consumer.close()
    finally:
        admin.delete_topics([name], operation_timeout=timeout)[name].result()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", default="127.0.0.1:9092")
    ap.add_argument("--timeout", type=float, default=30.0)
    ap.add_argument("--roundtrip", action="store_true")
    args = ap.parse_args()
    try:
        admin = wait_metadata(args.bootstrap, args.timeout)
        if args.roundtrip:
            t0 = time.monotonic()
            value = roundtrip(admin, args.bootstrap, args.timeout)
            print(f"kafka round trip ok ({value!r} in {time.monotonic() - t0:.2f}s)")
    except Exception as e:  # one readable line for the shell
        print(f"{type(e).__name__}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

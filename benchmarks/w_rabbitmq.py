"""RABBIT: RabbitMQ, no-op handler: the consumer through RabbitMQQueue (bulk 1 and 10)
beside a bare pika consumer loop, and beside Dramatiq's and Celery's RabbitMQ brokers on
the same server (each where it is installed; benchmark-only, not dependencies).

Every trial fills its own queue (a bare publisher, before the clock), consumes it to the
n-th ack, checks the queue is empty and deletes what it declared.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

from ._harness import Plan, Row, Target

URL = os.environ.get("QC_BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
HANDLERS = 16
PEER_THREADS = 8


def noop(messages: Iterator[Any]) -> None:
    for _ in messages:
        pass


def plan(quick: bool) -> Plan:
    n = 2_000 if quick else 20_000
    spec = {"module": "w_rabbitmq"}
    rows = [
        Row("bare", "bare pika loop", "basic_consume, prefetch 100, ack each", n,
            {**spec, "runner": "bare"}),
        Row("bulk1", "Consumer + RabbitMQQueue",
            f"max_handlers={HANDLERS}, bulk 1, prefetch {HANDLERS}", n,
            {**spec, "runner": "consumer", "bulk": 1}),
        Row("bulk10", "Consumer + RabbitMQQueue",
            f"max_handlers={HANDLERS}, bulk 10, prefetch {HANDLERS * 10}", n,
            {**spec, "runner": "consumer", "bulk": 10}),
    ]  # fmt: skip
    notes = [NOTE]
    for peer, config in (
        ("dramatiq", f"RabbitmqBroker, Worker(worker_threads={PEER_THREADS})"),
        ("celery", f"worker --pool threads -c {PEER_THREADS}, acks_late, prefetch x4"),
    ):
        if importlib.util.find_spec(peer) is None:
            notes.append(f"{peer} is not installed here: no {peer} row.")
        else:
            rows.append(Row(peer, peer.capitalize(), config, n, {**spec, "runner": peer}))
    return Plan(
        "RABBIT",
        "RABBIT RabbitMQ (local 3.10), no-op handler",
        rows,
        references=["bare"],
        targets=[
            Target("RABBIT bulk 10 vs bare pika loop", "bulk10", "bare", 0.90),
            Target("RABBIT bulk 1 vs bare pika loop", "bulk1", "bare", 0.50),
        ],
        notes=notes,
    )


NOTE = (
    "Consuming is pushed (basic.consume) and an ack has no reply, so every runner makes no "
    "round trip per message: one ack frame each (the adapter acks one tag at a time, never "
    "`multiple`). The bare loop writes each ack at once (pika's blocking channel flushes "
    "after every call); the adapter writes the acks of one I/O-loop pass together. "
    "Celery's clock starts at its first handled message (its worker is a subprocess that "
    "takes seconds to boot); every other clock starts before connecting."
)


def trial(spec: dict[str, Any]) -> dict[str, Any]:
    import pika

    n = spec["n"]
    name = f"bench-{uuid.uuid4().hex[:10]}"
    runner = spec["runner"]
    try:
        if runner == "celery":
            seconds, notes = _celery(name, n)
        else:
            if runner != "dramatiq":
                _fill(name, n)
            run = {"bare": _bare, "consumer": _consumer, "dramatiq": _dramatiq}[runner]
            cpu = _cpu()
            seconds, notes = run(name, n, spec)
            # The machine is shared: CPU time per message says what wall time cannot.
            notes["CPU us/msg"] = round((_cpu() - cpu) / n * 1e6)
        left = _ready(name)
        problems = [f"{left} messages left in the queue"] if left else []
    finally:
        with contextlib.closing(pika.BlockingConnection(pika.URLParameters(URL))) as conn:
            channel = conn.channel()
            for queue in (name, f"{name}.dead", f"{name}.DQ", f"{name}.XQ"):
                channel.queue_delete(queue)
            with contextlib.suppress(Exception):
                channel.exchange_delete(name)
    return {"ok": not problems, "seconds": seconds, "error": "; ".join(problems), "notes": notes}


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _fill(name: str, n: int, durable: bool = True) -> None:
    import pika

    with contextlib.closing(pika.BlockingConnection(pika.URLParameters(URL))) as conn:
        channel = conn.channel()
        channel.queue_declare(name, durable=durable)
        properties = pika.BasicProperties(content_type="text/plain", delivery_mode=2)
        for i in range(n):
            channel.basic_publish("", name, str(i).encode(), properties)
        deadline = time.monotonic() + 60
        while channel.queue_declare(name, passive=True).method.message_count < n:
            if time.monotonic() > deadline:
                raise RuntimeError("the queue was not filled")
            time.sleep(0.05)


def _ready(name: str) -> int:
    import pika

    with contextlib.closing(pika.BlockingConnection(pika.URLParameters(URL))) as conn:
        return int(conn.channel().queue_declare(name, passive=True).method.message_count)


def _bare(name: str, n: int, spec: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    import pika

    started = time.perf_counter()
    conn = pika.BlockingConnection(pika.URLParameters(URL))
    channel = conn.channel()
    channel.basic_qos(prefetch_count=100)
    acked = 0

    def on_message(ch: Any, method: Any, properties: Any, body: bytes) -> None:
        nonlocal acked
        noop(iter((body,)))
        ch.basic_ack(method.delivery_tag)
        acked += 1
        if acked >= n:
            ch.stop_consuming()

    channel.basic_consume(name, on_message)
    channel.start_consuming()
    seconds = time.perf_counter() - started
    conn.close()
    return seconds, {}


def _consumer(name: str, n: int, spec: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    from queue_consumer import Consumer
    from queue_consumer.adapters.rabbitmq import RabbitMQQueue

    bulk = spec["bulk"]
    done = threading.Event()
    finished = [0.0]
    lock = threading.Lock()
    count = [0]

    class Counting(RabbitMQQueue):
        def cleanup(self, messages: Any) -> None:
            messages = list(messages)
            super().cleanup(messages)
            with lock:
                count[0] += len(messages)
                if count[0] >= n and not done.is_set():
                    finished[0] = time.perf_counter()
                    done.set()

    started = time.perf_counter()
    queue = Counting(
        URL, name, prefetch=HANDLERS * bulk, max_messages=max(bulk, HANDLERS), wait_time=0.5
    )
    consumer = Consumer(queue, noop, max_workers=1, max_handlers=HANDLERS, messages_bulk_size=bulk)
    consumer.start()
    try:
        if not done.wait(600):
            raise RuntimeError(f"only {count[0]} of {n} cleaned up")
    finally:
        consumer.shutdown()
        queue.close()
    stats = consumer.statistics()
    if stats.succeeded != n or stats.failed or stats.errors:
        raise RuntimeError(f"consumer statistics: {stats}")
    return finished[0] - started, {"get calls/msg": round(stats.get_calls / n, 3)}


def _dramatiq(name: str, n: int, spec: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    import dramatiq
    from dramatiq.brokers.rabbitmq import RabbitmqBroker

    broker = RabbitmqBroker(url=URL)
    dramatiq.set_broker(broker)
    done = threading.Event()
    lock = threading.Lock()
    count = [0]
    finished = [0.0]

    @dramatiq.actor(queue_name=name, max_retries=0)
    def work(i: int) -> None:
        with lock:
            count[0] += 1
            if count[0] >= n:
                finished[0] = time.perf_counter()
                done.set()

    for i in range(n):  # before the clock, like the other fills
        work.send(i)
    worker = dramatiq.Worker(broker, worker_threads=PEER_THREADS)
    started = time.perf_counter()
    worker.start()
    try:
        if not done.wait(600):
            raise RuntimeError(f"dramatiq handled only {count[0]} of {n}")
    finally:
        worker.stop()
        broker.close()
    return finished[0] - started, {}


CELERY_APP = """
import os
import resource
from celery import Celery
from kombu import Queue

NAME, OUT = os.environ["BENCH_QUEUE"], os.environ["BENCH_OUT"]
app = Celery("bench", broker=os.environ["BENCH_URL"])
app.conf.update(
    task_queues=[Queue(NAME, routing_key=NAME)], task_default_queue=NAME,
    task_default_exchange=NAME, task_acks_late=True, worker_prefetch_multiplier=4,
    worker_enable_remote_control=False, task_ignore_result=True,
    broker_connection_retry_on_startup=True, worker_hijack_root_logger=False,
)
_fd = os.open(OUT, os.O_WRONLY | os.O_APPEND | os.O_CREAT)

@app.task(name="noop")
def noop(i):
    os.write(_fd, b".")   # one byte per handled message: the file size counts them
"""


def _celery(name: str, n: int) -> tuple[float, dict[str, Any]]:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "handled")
        open(out, "wb").close()
        with open(os.path.join(tmp, "bench_celery.py"), "w") as module:
            module.write(CELERY_APP)
        env = {**os.environ, "BENCH_QUEUE": name, "BENCH_OUT": out, "BENCH_URL": URL,
               "PYTHONPATH": tmp}  # fmt: skip
        sys.path.insert(0, tmp)
        os.environ.update(env)
        import bench_celery

        for i in range(n):
            bench_celery.noop.apply_async((i,))
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "bench_celery", "worker", "--pool",
             "threads", "-c", str(PEER_THREADS), "-l", "WARNING", "--without-heartbeat",
             "--without-mingle", "--without-gossip", "-Q", name],
            cwd=tmp, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 600
            while os.path.getsize(out) == 0:
                if time.monotonic() > deadline or worker.poll() is not None:
                    raise RuntimeError("the celery worker did not start")
                time.sleep(0.001)
            started = time.perf_counter()
            while os.path.getsize(out) < n:
                if time.monotonic() > deadline or worker.poll() is not None:
                    raise RuntimeError(f"celery handled {os.path.getsize(out)} of {n}")
                time.sleep(0.002)
            seconds = time.perf_counter() - started
            # acks_late: the last acks may still be on their way; the check waits for them.
            wait = time.monotonic() + 10
            while _ready(name) and time.monotonic() < wait:
                time.sleep(0.05)
        finally:
            worker.terminate()
            worker.wait(60)
        bench_celery.app.close()
    return seconds * n / (n - 1), {}

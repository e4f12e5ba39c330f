"""One scenario: a fresh queue, M messages, N consumer processes of the real CLI, faults on a
schedule (at shares of the messages handled), then the same check for every queue x fault:
every message handled at least once or dead-lettered by design; none lost."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from . import _proxy, _servers
from ._queues import LEASE, Backend, Target

ROOT = Path(__file__).resolve().parents[2]  # the repository: benchmarks is importable from it
HANDLER = "benchmarks.chaos._handler:handle"
INITIALIZER = "benchmarks.chaos._handler:init"


@dataclasses.dataclass
class Fault:
    name: str
    what: str  #: one line for the table
    processes: bool = False  #: consumers run --processes (handler children)
    kinds: dict[str, float] = dataclasses.field(default_factory=dict)  #: share of bodies
    at: tuple[float, ...] = ()  #: shares of the messages handled when the action runs
    extra: tuple[str, ...] = ()  #: more `run` options
    env: dict[str, str] = dataclasses.field(default_factory=dict)


FAULTS: dict[str, Fault] = {
    f.name: f
    for f in (
        Fault("none", "baseline: no fault"),
        Fault("kill-consumer", "SIGKILL of a consumer, then a restart (x2)", at=(0.3, 0.6)),
        Fault("kill-child", "SIGKILL of every handler child (x3)", True, at=(0.25, 0.5, 0.75)),
        Fault(
            "rolling-deploy",
            "each consumer replaced (new up, old SIGTERM)",
            at=(0.15, 0.3, 0.45, 0.6),
        ),
        Fault("cut-connections", "server closes the consumers' connections (x2)", at=(0.3, 0.6)),
        Fault("broker-restart", "broker restarted (1 s down)", at=(0.4,)),
        Fault("host-partition", "a consumer host's link down 5 s (netns + veth)", at=(0.3,)),
        Fault("flaky-broker", "15% of requests: 503 / throttled / dropped before or after"),
        Fault(
            "handler-raise",
            "15% raise once; 2% poison (always raise)",
            kinds={"fail1": 0.15, "poison": 0.02},
        ),
        Fault(
            "handler-hang",
            "3% hang 30 s past --handler-timeout 2 (child killed)",
            True,
            kinds={"hang1": 0.03},
            env={"CHAOS_HANG": "30"},
            extra=("--handler-timeout", "2", "--max-stuck-handlers", "1000"),
        ),
        Fault(
            "stuck-threads",
            "3% hang 30 s in threads: --max-stuck-handlers 0 exits 3, the harness restarts",
            kinds={"hang1": 0.03},
            env={"CHAOS_HANG": "30"},
            extra=("--handler-timeout", "2", "--max-stuck-handlers", "0"),
        ),
        Fault("handler-exit", "3% os._exit(3) in the handler child", True, kinds={"exit1": 0.03}),
        Fault(
            "handler-memory",
            "3% allocate 1 GiB over RLIMIT_AS (+256 MiB)",
            True,
            kinds={"mem1": 0.03},
            env={"CHAOS_MEMORY_LIMIT": str(256 << 20)},
        ),
    )
}


@dataclasses.dataclass
class Event:
    name: str
    start: float
    end: float
    detail: str
    pids: tuple[int, ...] = ()  #: consumers whose recovery counts (None: any)
    killed: tuple[int, ...] = ()


@dataclasses.dataclass
class Result:
    queue: str
    fault: str
    sent: int = 0
    handled: int = 0
    dead: int = 0
    poison: int = 0
    lost: int = 0
    duplicates: int = 0
    causes: dict[str, int] = dataclasses.field(default_factory=dict)
    recover: float | None = None
    seconds: float = 0.0
    skipped: str = ""
    notes: list[str] = dataclasses.field(default_factory=list)
    throughput: float = 0.0


class Consumer:
    def __init__(self, index: int, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.index = index
        self.log = log.open("ab")
        self.process = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.pid = self.process.pid
        self.planned = False  #: its exit was asked for


class Records:
    """Reads the handled-PID.log files incrementally."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.offsets: dict[Path, int] = {}
        self.rows: list[tuple[str, int, float]] = []

    def poll(self) -> None:
        for path in self.directory.glob("handled-*.log"):
            offset = self.offsets.get(path, 0)
            with path.open("rb") as file:
                file.seek(offset)
                data = file.read()
            end = data.rfind(b"\n") + 1
            self.offsets[path] = offset + end
            for line in data[:end].decode().splitlines():
                message_id, pid, stamp = line.split()
                self.rows.append((message_id, int(pid), float(stamp)))


def bodies_for(fault: Fault, tag: str, count: int, seed: int) -> tuple[list[str], set[str]]:
    """Message bodies ``TAG:ID:KIND``; returns them and the ids that must dead-letter."""
    rng = random.Random(seed)
    bodies, poison = [], set()
    for number in range(count):
        kind, roll = "ok", rng.random()
        for name, share in fault.kinds.items():
            if roll < share:
                kind = name
                break
            roll -= share
        message_id = f"{number:05d}"
        if kind == "poison":
            poison.add(message_id)
        bodies.append(f"{tag}:{message_id}:{kind}")
    if "poison" in fault.kinds and not poison:  # at least one, whatever the seed drew
        bodies[-1] = f"{tag}:{count - 1:05d}:poison"
        poison.add(f"{count - 1:05d}")
    return bodies, poison


def run(
    backend: Backend,
    fault: Fault,
    directory: Path,
    *,
    messages: int,
    consumers: int,
    limit: float,
    log: Callable[[str], None] = print,
    sleep: float = 0.1,
    workers: int = 2,
    handlers: int = 2,
) -> Result:
    """Run one queue x fault; never raises for what the queue did (that is the result)."""
    result = Result(backend.name, fault.name)
    reason = backend.not_applicable.get(fault.name)
    if reason is None and fault.name == "host-partition":
        reason = _servers.netns_unavailable()
    if reason is None and fault.name == "cut-connections" and backend.cut is None:
        reason = "no way to cut this queue's connections"
    if reason is None and fault.name == "broker-restart" and backend.restart is None:
        reason = "no private server to restart"
    if reason:
        result.skipped = reason
        return result
    directory.mkdir(parents=True, exist_ok=True)
    target = backend.new_queue()
    try:
        with contextlib.ExitStack() as stack:
            return _run(
                backend,
                fault,
                target,
                directory,
                result,
                stack,
                messages=messages,
                consumers=consumers,
                limit=limit,
                log=log,
                sleep=sleep,
                workers=workers,
                handlers=handlers,
            )
    finally:
        target.close()


def _run(
    backend: Backend,
    fault: Fault,
    target: Target,
    directory: Path,
    result: Result,
    stack: contextlib.ExitStack,
    *,
    messages: int,
    consumers: int,
    limit: float,
    log: Callable[[str], None],
    sleep: float,
    workers: int,
    handlers: int,
) -> Result:
    bodies, poison = bodies_for(fault, target.tag, messages, seed=len(fault.name))
    expected = {body.split(":")[1] for body in bodies} - poison
    target.put(bodies)
    result.sent, result.poison = len(bodies), len(poison)

    # Where each consumer connects: straight, through the SQS fault proxy, or from a netns.
    hosts: list[_servers.Host | None] = [None] * consumers
    urls = [target.url] * consumers
    proxy = None
    if fault.name == "flaky-broker":
        endpoint = backend.endpoint(target)
        assert endpoint is not None
        proxy = stack.enter_context(_proxy.FaultyProxy(f"http://{endpoint[0]}:{endpoint[1]}"))
        urls = [backend.consumer_url(target, ("127.0.0.1", proxy.port))] * consumers
    if fault.name == "host-partition":
        endpoint = backend.endpoint(target)
        assert endpoint is not None
        made = stack.enter_context(_servers.hosts(consumers))
        hosts = list(made)
        for index, host in enumerate(made):
            forwarder = _servers.Forwarder((host.address, endpoint[1]), endpoint)
            stack.callback(forwarder.close)
            urls[index] = backend.consumer_url(target, (host.address, endpoint[1]))
    env = {**os.environ, **backend.env(), **fault.env, "CHAOS_DIR": str(directory)}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    if sleep:
        env["CHAOS_SLEEP"] = str(sleep)
    if proxy is not None:  # the SQS endpoint is the queue URL's host: the proxy's
        env.pop("AWS_ENDPOINT_URL_SQS", None)

    def argv(index: int) -> list[str]:
        prefix = hosts[index].prefix() if hosts[index] is not None else []  # type: ignore[union-attr]
        options = [
            "--workers",
            str(workers),
            "--handlers",
            str(handlers),
            "--bulk-size",
            "1",
            "--shutdown-timeout",
            "5",
            "--log-level",
            "warning",
            *fault.extra,
        ]
        if fault.processes:
            options += ["--processes", "--initializer", INITIALIZER]
        return [
            *prefix,
            sys.executable,
            "-m",
            "queue_consumer",
            "run",
            HANDLER,
            "--queue",
            urls[index],
            *options,
        ]

    spawned = 0

    def spawn(index: int) -> Consumer:
        nonlocal spawned
        spawned += 1
        return Consumer(index, argv(index), env, directory / f"consumer-{index}-{spawned}.log")

    records = Records(directory)
    events: list[Event] = []
    started = time.monotonic()
    wall0 = time.time()
    pool = [spawn(index) for index in range(consumers)]
    everyone = list(pool)
    stack.callback(_stop_all, everyone, 0.0)
    schedule = list(fault.at)
    restarts: list[str] = []
    done_at: float | None = None

    def act(share: float) -> None:
        begin = time.time()
        if fault.name == "kill-consumer":
            victim = pool[len(events) % len(pool)]
            victim.planned = True
            victim.process.send_signal(signal.SIGKILL)
            victim.process.wait()
            pool[pool.index(victim)] = fresh = spawn(victim.index)
            everyone.append(fresh)
            events.append(
                Event(fault.name, begin, time.time(), f"SIGKILL {victim.pid}", killed=(victim.pid,))
            )
        elif fault.name == "kill-child":
            killed = _kill_children(directory, {c.pid for c in everyone})
            events.append(
                Event(
                    fault.name,
                    begin,
                    time.time(),
                    f"SIGKILL {len(killed)} children",
                    killed=tuple(killed),
                )
            )
        elif fault.name == "rolling-deploy":
            old = pool[len(events) % len(pool)]
            fresh = spawn(old.index)
            everyone.append(fresh)
            old.planned = True
            old.process.send_signal(signal.SIGTERM)
            code = old.process.wait(60)
            pool[pool.index(old)] = fresh
            if code != 0:
                result.notes.append(f"a SIGTERM'd consumer exited {code}")
            events.append(Event(fault.name, begin, time.time(), f"SIGTERM {old.pid} -> {code}"))
        elif fault.name == "cut-connections":
            assert backend.cut is not None
            detail = backend.cut(target, [c.pid for c in pool])
            events.append(Event(fault.name, begin, time.time(), detail))
        elif fault.name == "broker-restart":
            assert backend.restart is not None
            detail = backend.restart(target)
            events.append(Event(fault.name, begin, time.time(), detail))
        elif fault.name == "host-partition":
            host = hosts[0]
            assert host is not None
            host.link(False)
            time.sleep(5)
            host.link(True)
            events.append(
                Event(fault.name, begin, time.time(), f"{host.name} down 5 s", pids=(pool[0].pid,))
            )
        log(f"    {share:.0%} handled: {events[-1].detail}")

    while True:
        records.poll()
        handled = {row[0] for row in records.rows}
        now = time.monotonic()
        if schedule and len(handled) >= schedule[0] * len(expected):
            act(schedule.pop(0))
            continue
        if (expected <= handled and not schedule) and (
            not poison or poison <= {b.split(":")[1] for b in target.dead_letters()}
        ):
            done_at = done_at or now
            if now - done_at > 1.0:  # let batched settles go out
                break
        if now - started > limit:
            result.notes.append(f"stopped at the {limit:.0f} s limit")
            break
        for index, consumer in enumerate(pool):
            code = consumer.process.poll()
            if code is not None and not consumer.planned:  # the orchestrator restarts it
                consumer.planned = True
                restarts.append(f"pid {consumer.pid} exited {code}")
                stamp = time.time()
                events.append(Event(f"exit {code}", stamp - 0.5, stamp, "", killed=(consumer.pid,)))
                pool[index] = spawn(consumer.index)
                everyone.append(pool[index])
        time.sleep(0.2)
    elapsed = time.monotonic() - started
    codes = _stop_all(everyone, 30.0)
    bad = [f"{pid}:{code}" for pid, code in codes if code not in (0, -9, None)]
    if bad:
        result.notes.append(f"consumers exited {', '.join(bad)} on SIGTERM")
    if restarts:
        shown = "; ".join(restarts[:3]) + (
            f"; {len(restarts) - 3} more" if len(restarts) > 3 else ""
        )
        result.notes.append(f"{len(restarts)} restarted after exiting: {shown}")
    records.poll()
    dead_ids = {body.split(":")[1] for body in target.dead_letters() if body.startswith(target.tag)}
    handled = {row[0] for row in records.rows}
    result.seconds = elapsed
    result.handled = len(handled)
    result.dead = len(dead_ids)
    result.lost = len((expected | poison) - handled - dead_ids)
    if dead_ids - poison:
        result.notes.append(f"{len(dead_ids - poison)} dead-lettered not by design")
    if poison - dead_ids:
        result.notes.append(f"{len(poison - dead_ids)} poison not in the dead letters")
    result.duplicates = len(records.rows) - len(handled)
    result.causes = _explain(records.rows, events, backend, fault.name)
    result.recover = _recovery(records.rows, events)
    result.notes += [
        f"{e.detail}" for e in events if e.name in ("cut-connections", "broker-restart")
    ][:1]
    if proxy is not None:
        result.notes.append(f"proxy injected {proxy.injected} of {proxy.requests} requests")
    if records.rows:
        stamps = [row[2] for row in records.rows]
        span = max(stamps) - max(min(stamps), wall0)
        result.throughput = len(records.rows) / span if span > 0 else 0.0
    result.notes.append(f"left: {target.depth()}")
    evidence = _evidence(directory)
    if evidence:
        result.notes.append(f"consumer logs: {evidence}")
    return result


#: What the consumers' logs say the faults did (proof that they happened).
SIGNS = {
    "handler failed": "failure warnings (one per cause a minute)",
    "(handler_timeout)": "children killed at the timeout",
    "handler process died": "children died",
    "MemoryError": "MemoryError",
    "Traceback": "tracebacks",
}


def _evidence(directory: Path) -> str:
    counts = dict.fromkeys(SIGNS.values(), 0)
    for path in directory.glob("consumer-*.log"):
        for line in path.read_text(errors="replace").splitlines():
            for sign, label in SIGNS.items():
                if sign in line:
                    counts[label] += 1
    return ", ".join(f"{n} {label}" for label, n in counts.items() if n)


def _kill_children(directory: Path, consumers: set[int]) -> list[int]:
    killed = []
    for path in directory.glob("child-*"):
        pid = int(path.name.split("-")[1])
        if pid in consumers:
            continue
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
        path.unlink()
    return killed


def _stop_all(consumers: list[Consumer], grace: float) -> list[tuple[int, int | None]]:
    for consumer in consumers:
        if consumer.process.poll() is None:
            consumer.process.send_signal(signal.SIGTERM)
    codes = []
    deadline = time.monotonic() + grace
    for consumer in consumers:
        try:
            consumer.process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(consumer.pid, signal.SIGKILL)
            consumer.process.wait()
        consumer.log.close()
        if not consumer.planned:
            codes.append((consumer.pid, consumer.process.returncode))
    return codes


def _explain(
    rows: list[tuple[str, int, float]], events: list[Event], backend: Backend, fault: str
) -> dict[str, int]:
    """For each duplicate handling: which fault made it (by its first handling)."""
    firsts: dict[str, tuple[int, float]] = {}
    causes: dict[str, int] = {}
    for message_id, pid, stamp in sorted(rows, key=lambda row: row[2]):
        if message_id not in firsts:
            firsts[message_id] = (pid, stamp)
            continue
        pid0, stamp0 = firsts[message_id]
        cause = "unexplained"
        for event in events:
            if pid0 in event.killed and stamp0 <= event.end:
                cause = f"{event.name}: handled, killed before its settle"
                break
            if event.start - 1.0 <= stamp0 <= event.end + LEASE + 1.0:
                cause = f"{event.name}: settle lost in the fault"
                break
        if cause == "unexplained" and fault == "flaky-broker":
            cause = "flaky-broker: a settle whose answer the proxy dropped (or moto)"
        elif cause == "unexplained" and backend.duplicate_note:
            cause = f"no fault near it: {backend.duplicate_note}"
        causes[cause] = causes.get(cause, 0) + 1
    return causes


def _recovery(rows: list[tuple[str, int, float]], events: list[Event]) -> float | None:
    """Worst, over the faults, of the seconds from the fault's end to the next handling."""
    worst = None
    for event in events:
        after = [s for _, pid, s in rows if s > event.end and (not event.pids or pid in event.pids)]
        if after:
            gap = min(after) - event.end
            worst = gap if worst is None else max(worst, gap)
    return worst


@contextlib.contextmanager
def started(backend: Backend) -> Iterator[Backend]:
    backend.start()
    try:
        yield backend
    finally:
        backend.stop()


def as_row(result: Result) -> dict[str, Any]:
    return dataclasses.asdict(result)

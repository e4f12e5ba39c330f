"""`send`, `stats` and `redrive`: produce, inspect, and re-drive dead letters from the shell."""

from __future__ import annotations

import json
from pathlib import Path

from cli_helpers import CLI

from queue_consumer.adapters.sqlite import SQLiteQueue


def _bodies(path: Path, queue: str = "jobs") -> list[object]:
    with SQLiteQueue(path, queue) as q:
        return [m.body for m in q.get()]


def test_send_one_body(cli: CLI, db_url: str, tmp_path: Path) -> None:
    result = cli.run("send", db_url, '{"to": "ann"}')
    assert (result.returncode, result.stdout) == (0, "sent 1 message\n"), result.stderr
    assert _bodies(tmp_path / "jobs.db") == ['{"to": "ann"}']


def test_send_stdin_lines_skips_blank_ones(cli: CLI, db_url: str, tmp_path: Path) -> None:
    result = cli.run("send", db_url, "-", input="one\n\ntwo\r\nthree")
    assert (result.returncode, result.stdout) == (0, "sent 3 messages\n"), result.stderr
    assert _bodies(tmp_path / "jobs.db") == ["one", "two", "three"]


def test_send_file_of_json_lines(cli: CLI, db_url: str, tmp_path: Path) -> None:
    lines = [json.dumps({"n": n}) for n in range(1200)]  # more than one put_many chunk
    (tmp_path / "in.jsonl").write_text("\n".join(lines) + "\n")
    result = cli.run("send", db_url, "--file", "in.jsonl")
    assert (result.returncode, result.stdout) == (0, "sent 1200 messages\n"), result.stderr
    assert cli.stats(db_url)["depth"] == 1200


def test_send_refuses_a_bad_json_line_and_sends_nothing(
    cli: CLI, db_url: str, tmp_path: Path
) -> None:
    (tmp_path / "in.jsonl").write_text('{"n": 1}\n{"n": 2}\nnot json\n')
    result = cli.run("send", db_url, "--file", "in.jsonl")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [result.stderr.strip()], "one line"
    assert "in.jsonl:3: not a JSON line" in result.stderr
    # The two good lines were read first, but nothing is sent from a broken file: the
    # queue is not even opened.
    assert not (tmp_path / "jobs.db").exists()


def test_send_needs_exactly_one_source(cli: CLI, db_url: str) -> None:
    for args in ([], ["body", "--file", "x.jsonl"]):
        result = cli.run("send", db_url, *args)
        assert result.returncode == 2
        assert "exactly one of BODY" in result.stderr


def test_stats_text_and_json(cli: CLI, db_url: str) -> None:
    assert cli.run("send", db_url, "-", input="a\nb\n").returncode == 0
    result = cli.run("stats", db_url)
    assert result.returncode == 0, result.stderr
    lines = dict(line.rsplit(None, 1) for line in result.stdout.splitlines())
    assert lines["depth"] == "2"
    assert lines["in flight"] == "0"
    assert lines["dead letters"] == "0"
    assert cli.stats(db_url) == {
        "depth": 2,
        "visible": 2,
        "delayed": 0,
        "in_flight": 0,
        "dead_letters": 0,
    }


def test_stats_url_from_the_environment(cli: CLI, db_url: str) -> None:
    assert cli.run("send", db_url, "x").returncode == 0
    result = cli.run("stats", "--json", QUEUE_CONSUMER_QUEUE=db_url)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["depth"] == 1


def test_redrive_some_then_all_dead_letters(cli: CLI, db_url: str, tmp_path: Path) -> None:
    with SQLiteQueue(tmp_path / "jobs.db", "jobs", max_attempts=1) as queue:
        ids = queue.put_many(["a", "b", "c"])
        queue.reject(queue.get())  # one attempt allowed: all three are dead letters
    assert cli.stats(db_url)["dead_letters"] == 3

    result = cli.run("redrive", db_url, "--id", str(ids[1]))
    assert (result.returncode, result.stdout) == (0, "re-drove 1 dead letter\n"), result.stderr
    assert _bodies(tmp_path / "jobs.db") == ["b"]

    result = cli.run("redrive", db_url)
    assert (result.returncode, result.stdout) == (0, "re-drove 2 dead letters\n"), result.stderr
    stats = cli.stats(db_url)
    assert (stats["dead_letters"], stats["visible"]) == (0, 2)


def test_commands_need_what_the_queue_offers(cli: CLI) -> None:
    # memory:// queues have stats() but no redrive(): a configuration error, exit 2.
    result = cli.run("redrive", "memory://jobs")
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        == "queue-consumer: error: the queue at memory://jobs has no redrive()"
    )

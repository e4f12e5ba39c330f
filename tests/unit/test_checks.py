"""The shared checks: one wording, and text as URLs and the command line give it."""

from __future__ import annotations

import pytest

from queue_consumer import _checks as checks
from queue_consumer.adapters._options import parse_query, redact
from queue_consumer.errors import ConfigurationError


@pytest.mark.parametrize(
    ("check", "value", "expected"),
    [
        (checks.seconds, "1.5", 1.5),
        (checks.seconds, 0, 0.0),
        (checks.count, "3", 3),
        (checks.flag, "ON", True),
        (checks.flag, "no", False),
        (checks.flag, False, False),
        (checks.fraction, "0.5", 0.5),
    ],
)
def test_values_and_their_text_are_accepted(check, value, expected) -> None:  # type: ignore[no-untyped-def]
    assert check("x", value) == expected


@pytest.mark.parametrize(
    ("check", "value", "bounds", "wording"),
    [
        (checks.seconds, -1, {}, "x must be a number of seconds >= 0, not -1"),
        (checks.seconds, "inf", {}, "x must be a number of seconds >= 0, not 'inf'"),
        (checks.seconds, 100, {"maximum": 20}, "x must be a number of seconds >= 0 and <= 20"),
        (checks.seconds, 0, {"positive": True}, "x must be a number of seconds > 0, not 0"),
        (checks.seconds, True, {}, "x must be a number of seconds >= 0, not True"),
        (checks.count, 0, {}, "x must be an integer >= 1, not 0"),
        (checks.count, 99999, {"maximum": 1024}, "x must be an integer from 1 to 1024"),
        (checks.count, 1.5, {}, "x must be an integer >= 1, not 1.5"),
        (checks.flag, "maybe", {}, "x must be true or false"),
        (checks.fraction, 1, {}, "x must be a number between 0 and 1 (exclusive), not 1"),
    ],
)
def test_bad_values_fail_with_one_wording(check, value, bounds, wording) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(
        ConfigurationError, match="^" + wording.replace("(", r"\(").replace(")", r"\)")
    ):
        check("x", value, **bounds)


def test_choice_and_optional() -> None:
    assert checks.choice("mode", "ADAPTIVE", ["standard", "adaptive"]) == "adaptive"
    with pytest.raises(ConfigurationError, match="mode must be one of standard, adaptive"):
        checks.choice("mode", "fast", ["standard", "adaptive"])
    assert checks.optional(checks.seconds, "t", "none") is None
    assert checks.optional(checks.seconds, "t", "2", maximum=3) == 2.0


def test_query_options_unknown_repeated_and_passthrough_never_show_the_password() -> None:
    table = {"wait": ("wait_time", checks.seconds)}
    url = "redis://user:hunter2@host:6379/0?wait=1&wait=2"
    with pytest.raises(ConfigurationError, match="given twice") as info:
        parse_query(url, table)
    assert "hunter2" not in str(info.value) and "user:***@host" in str(info.value)
    with pytest.raises(ConfigurationError, match=r"unknown option 'nope'.*known: wait"):
        parse_query("redis://h/?nope=1", table)
    assert parse_query("amqp://h/?wait=1&heartbeat=5", table, passthrough=True) == {
        "wait_time": 1.0,
        "__rest__": [("heartbeat", "5")],
    }
    assert redact("postgresql://u:p%40ss@h/db") == "postgresql://u:***@h/db"
    assert redact("sqlite:///x.db") == "sqlite:///x.db"

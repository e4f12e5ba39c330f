"""The public surface: one sorted __all__, everything in it importable, typed package."""

from __future__ import annotations

import importlib.resources

import queue_consumer


def test_all_is_sorted_and_complete() -> None:
    names = queue_consumer.__all__
    assert names == sorted(names)
    for name in names:
        assert getattr(queue_consumer, name) is not None
    public = {n for n in vars(queue_consumer) if not n.startswith("_")}
    modules = {"errors", "testing", "adapters"}
    assert public - modules - {"annotations"} <= set(names)


def test_the_package_is_typed() -> None:
    assert (importlib.resources.files("queue_consumer") / "py.typed").is_file()


def test_errors_module_lists_the_whole_tree() -> None:
    from queue_consumer import errors

    for name in ("ConfigurationError", "ConsumerStateError", "StuckHandlersError"):
        assert name in (errors.__doc__ or "")
        assert issubclass(getattr(errors, name), errors.QueueConsumerError)

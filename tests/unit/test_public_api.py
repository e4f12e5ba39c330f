"""The public surface: one sorted __all__, everything in it importable, typed package."""

from __future__ import annotations

import importlib.resources
import types

import queue_consumer


def test_all_is_sorted_and_complete() -> None:
    names = queue_consumer.__all__
    assert names == sorted(names)
    for name in names:
        assert getattr(queue_consumer, name) is not None
    # Submodules (errors, testing, cli, adapters) appear as attributes once imported.
    public = {
        name
        for name, value in vars(queue_consumer).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert public - {"annotations"} <= set(names)


def test_the_package_is_typed() -> None:
    assert (importlib.resources.files("queue_consumer") / "py.typed").is_file()


def test_errors_module_lists_the_whole_tree() -> None:
    from queue_consumer import errors

    for name in ("ConfigurationError", "ConsumerStateError", "StuckHandlersError"):
        assert name in (errors.__doc__ or "")
        assert issubclass(getattr(errors, name), errors.QueueConsumerError)

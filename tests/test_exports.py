"""The public surface: ``__all__`` is honest, sorted, and every name is documented."""

from __future__ import annotations

import combinators
import combinators.aio
import combinators.orchestration
import combinators.testing


def test_all_names_exist_and_are_sorted() -> None:
    names = combinators.__all__
    assert names == sorted(names)
    assert len(set(names)) == len(names)
    for name in names:
        assert hasattr(combinators, name), name


def test_every_public_import_is_exported() -> None:
    public = {
        name
        for name, value in vars(combinators).items()
        if not name.startswith("_") and getattr(value, "__module__", "").startswith("combinators")
    }
    assert public <= set(combinators.__all__), public - set(combinators.__all__)


def test_public_names_have_docstrings() -> None:
    for module in (combinators, combinators.aio, combinators.orchestration, combinators.testing):
        for name in getattr(module, "__all__", [n for n in vars(module) if not n.startswith("_")]):
            value = getattr(module, name)
            if callable(value) and getattr(value, "__module__", "").startswith("combinators"):
                assert (value.__doc__ or "").strip(), f"{module.__name__}.{name} has no docstring"


def test_aio_module_exports_run_agent_lift() -> None:
    assert combinators.aio.__all__ == ["agent", "lift", "run"]
    for name in combinators.aio.__all__:
        assert getattr(combinators.aio, name).__module__.startswith("combinators")

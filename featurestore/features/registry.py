"""Feature kinds by name: the built-ins, those other packages declare, those registered at run time.

A package adds a kind by declaring an entry point in the group `featurestore.features` whose
name is the kind and whose object is its `Feature` subclass, e.g. in pyproject.toml:

    [project.entry-points."featurestore.features"]
    chroma = "my_package.chroma:Chroma"

Every process (the build's driver, each Dask worker, each loader worker) finds it the same way,
so nothing in this package needs editing. `register(cls)` adds a class in this process only.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.metadata
from collections.abc import Iterator
from functools import cache

from featurestore.errors import UserError
from featurestore.features.base import LAYOUTS, Feature

ENTRY_POINT_GROUP = "featurestore.features"
_registered: dict[str, type[Feature]] = {}


@cache
def _installed() -> dict[str, type[Feature]]:
    from featurestore.features import builtin

    found = {cls.kind: cls for cls in builtin.BUILTIN}
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if entry.name in found:
            continue  # a built-in name cannot be taken over
        try:
            cls = entry.load()
        except Exception as exc:  # noqa: BLE001 - a broken plug-in is named, not a traceback
            raise UserError(f"feature plug-in {entry.name!r} ({entry.value}) cannot be loaded: "
                            f"{type(exc).__name__}: {exc}") from None
        validate(cls, entry.name, entry.value)
        found[entry.name] = cls
    return found


def validate(cls: object, kind: str, where: str) -> None:
    """Refuse, in one line, a class that cannot serve as feature kind `kind`."""
    def bad(why: str) -> UserError:
        return UserError(f"feature plug-in {kind!r} ({where}): {why}")

    if not (isinstance(cls, type) and issubclass(cls, Feature)):
        raise bad("not a featurestore.features.Feature subclass")
    if getattr(cls, "kind", None) != kind:
        raise bad(f"names itself {getattr(cls, 'kind', None)!r}")
    if cls.layout not in LAYOUTS or cls.dtype not in ("float16", "float32"):
        raise bad(f"layout must be one of {', '.join(LAYOUTS)} and dtype float16 or float32")
    if cls.stats_dim is not None and cls.stats_dim not in cls.dims:
        raise bad(f"stats_dim {cls.stats_dim!r} is not one of its dims")
    settings = cls.Settings
    if not (dataclasses.is_dataclass(settings) and settings.__dataclass_params__.frozen):
        raise bad("its Settings must be a frozen dataclass")
    taken = [f.name for f in dataclasses.fields(settings) if f.name == "kind"]
    if taken:
        raise bad("a setting cannot be called 'kind' (the spec names an array's kind with it)")


def register(cls: type[Feature]) -> type[Feature]:
    """Add a feature kind in this process (a decorator). Dask workers and loader workers in other
    processes find it only if they import the module that registers it: prefer an entry point."""
    validate(cls, getattr(cls, "kind", ""), cls.__module__)
    _registered[cls.kind] = cls
    return cls


@contextlib.contextmanager
def registered(cls: type[Feature]) -> Iterator[type[Feature]]:
    """`register(cls)` for the block only (a test of a kind that is not installed)."""
    before = _registered.get(getattr(cls, "kind", ""))
    register(cls)
    try:
        yield cls
    finally:
        if before is None:
            _registered.pop(cls.kind, None)
        else:
            _registered[cls.kind] = before


def rediscover() -> None:
    """Look for entry points again: a plug-in installed after this process first asked."""
    _installed.cache_clear()


def available() -> dict[str, type[Feature]]:
    return {**_installed(), **_registered}


def feature_class(kind: str) -> type[Feature]:
    kinds = available()
    if kind not in kinds:
        raise UserError(f"unknown feature kind {kind!r}: choose from {', '.join(kinds)} (a plug-in's kind needs its "
                        "package installed where this runs)")
    return kinds[kind]

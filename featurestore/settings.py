"""Typed documents: a JSON or TOML document read into a frozen dataclass, checked field by field.

Every format this package writes (the spec and each feature kind's settings, the store's root
attributes, commit records) is a frozen dataclass whose fields declare their types and bounds
(`Annotated[int, Field(ge=1)]`). `parse` checks a document against it with pydantic in strict
mode: a string where a number belongs, a float where an integer belongs, a value out of range
or a key the dataclass does not have is refused with one line naming the document and the field.
Dataclasses set `__pydantic_config__ = FORBID` to refuse unknown keys.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import cache
from typing import Any, TypeVar

from pydantic import ConfigDict, Field, TypeAdapter, ValidationError

from featurestore.errors import UserError

__all__ = ["FORBID", "Field", "check", "dump", "parse"]

T = TypeVar("T")
FORBID = ConfigDict(extra="forbid")
_QUOTED = 60  # characters of an offending value quoted in a message


@cache
def _adapter(cls: type) -> TypeAdapter:
    return TypeAdapter(cls)


def parse(cls: type[T], document: bytes | str | Mapping[str, Any], where: str,
          error: type[UserError] = UserError) -> T:
    """`document` (JSON text, or a mapping of JSON values) as a `cls`; `error` naming `where` and
    the first offending field otherwise."""
    if not isinstance(document, (bytes, str)):
        try:
            document = json.dumps(document, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise error(f"{where}: not a JSON document ({exc})") from None
    try:
        return _adapter(cls).validate_json(document, strict=True)
    except ValidationError as exc:
        raise error(describe(exc, where)) from None


def check(value: T, where: str, error: type[UserError] = UserError) -> T:
    """`value` itself, once its fields pass the checks `parse` applies (for objects made in Python)."""
    return parse(type(value), dump(value), where, error)


def dump(value: Any) -> Any:
    """The JSON form of a dataclass (tuples become lists)."""
    return _adapter(type(value)).dump_python(value, mode="json")


def describe(exc: ValidationError, where: str) -> str:
    first = exc.errors()[0]
    if first["type"] == "value_error":  # a nested document's own checks: its message names the field
        return f"{where}: {first['ctx']['error']}"
    field = ".".join(str(p) for p in first["loc"])
    got = first.get("input")
    try:
        quoted = json.dumps(got)
    except (TypeError, ValueError):
        quoted = repr(got)
    if len(quoted) > _QUOTED:
        quoted = quoted[: _QUOTED - 3] + "..."
    at = f" {field}:" if field else ""
    message = first["msg"].replace("Unexpected keyword argument", "unknown field (written by a newer version?)")
    return f"{where}:{at} {message[0].lower()}{message[1:]} (got {quoted})"

"""Values typed by people (a config file, environment variables, flags, JSON requests)
checked against the dataclasses they fill, with answers that name where the value was
written and, for a misspelt name, the closest valid one.

pydantic checks and converts the values from the dataclasses' annotations (``"104"``
to 104, a list to a tuple, a ``Literal`` to one of its words), so a new field is
checked as soon as it is declared; the messages are ours, so that they read the same
whatever pydantic version is installed.
"""

from __future__ import annotations

import difflib
import types
from collections.abc import Callable, Iterable
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

from pydantic import TypeAdapter, ValidationError

T = TypeVar("T")
Origin = Callable[[str], str]
"""Where a field's value was written, for messages: ``config.toml: [server] dicom_port``."""

_KINDS = {
    "int": "an integer",
    "float": "a number",
    "bool": "true or false",
    "string": "a string",
    "tuple": "a list",
    "list": "a list",
    "path": "a path",
    "dict": "a table",
}


class Invalid(ValueError):
    """A value that does not fit its field; the message names where it was written."""


def closest(word: str, choices: Iterable[str]) -> str | None:
    """The valid name a misspelt ``word`` most probably meant, if any is close."""
    found = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    if not found:
        folded = {choice.lower(): choice for choice in choices}
        found = difflib.get_close_matches(word.lower(), list(folded), n=1, cutoff=0.6)
        return folded[found[0]] if found else None
    return found[0]


def did_you_mean(word: str, choices: Iterable[str], quote: str = "'") -> str:
    """`` (did you mean 'x'?)`` for a close valid name, else nothing."""
    match = closest(word, choices)
    return f" (did you mean {quote}{match}{quote}?)" if match else ""


_ADAPTERS: dict[type[Any], TypeAdapter[Any]] = {}
_HINTS: dict[type[Any], dict[str, Any]] = {}


def _adapter(cls: type[Any]) -> TypeAdapter[Any]:
    """Made once per class: building one takes milliseconds."""
    if cls not in _ADAPTERS:
        _ADAPTERS[cls] = TypeAdapter(cls)
    return _ADAPTERS[cls]


def _hints(cls: type[Any]) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = get_type_hints(cls)
    return _HINTS[cls]


def words_of(cls: type[Any], name: str) -> tuple[Any, ...]:
    """The values a ``Literal`` field (optional or not) allows; empty for other fields."""
    hint = _hints(cls).get(name)
    if get_origin(hint) in (Union, types.UnionType):
        hint = next((arg for arg in get_args(hint) if get_origin(arg) is Literal), None)
    return get_args(hint) if get_origin(hint) is Literal else ()


def is_word_list(cls: type[Any], name: str) -> bool:
    """Whether the field is a ``tuple[str, ...]``, which may also be written as a
    comma-separated string (an environment variable, a CLI option)."""
    return _hints(cls).get(name) == tuple[str, ...]


def check_unknown(known: Iterable[str], given: Iterable[str], where: str) -> None:
    """Refuse a name that is no field, suggesting the closest one."""
    names = list(known)
    for name in given:
        if name not in names:
            raise Invalid(f"{where} has no key {name!r}{did_you_mean(name, names)}")


def build(cls: type[T], values: dict[str, Any], origin: Origin) -> T:
    """The dataclass made from ``values``; :class:`Invalid` names the first bad one."""
    try:
        made: T = _adapter(cls).validate_python(values)
    except ValidationError as exc:
        error = exc.errors()[0]
        name = str(error["loc"][0]) if error["loc"] else ""
        if error["type"] == "missing":
            raise Invalid(f"{origin(name)} is missing") from None
        raise Invalid(f"{origin(name)}: {_problem(cls, name, error)}") from None
    return made


def _problem(cls: type[Any], name: str, error: Any) -> str:
    value = error["input"]
    if error["type"] == "literal_error":
        allowed = ", ".join(repr(word) for word in words_of(cls, name) if word is not None)
        return f"{value!r} is not one of {allowed}"
    kind = _KINDS.get(str(error["type"]).split("_")[0])
    if kind is not None:
        return f"{value!r} is not {kind}"
    return f"{value!r}: {error['msg']}"

"""Errors every door answers the same way, and the checks of JSON request fields that
raise them."""

from __future__ import annotations

from typing import Any


class FieldError(ValueError):
    """A request or entry that cannot be taken; ``field`` names what to correct, so that
    the REST API can answer ``{"error": …, "field": …}`` and the CLI name the option."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


def text_field(value: Any, name: str, error: type[FieldError] = FieldError) -> str:
    """A JSON request's optional string ``name``, stripped; ``error`` if it is another type."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise error(f"{name} must be a string", name)
    return value.strip()


def uid_list(value: Any, name: str, error: type[FieldError] = FieldError) -> tuple[str, ...]:
    """A JSON request's optional UID or list of UIDs ``name``, blanks dropped."""
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise error(f"{name} must be a UID or a list of UIDs", name)
    return tuple(item.strip() for item in value if item.strip())

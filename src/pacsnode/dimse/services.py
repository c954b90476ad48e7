"""Our own service classes in place of pynetdicom's, for the SOP classes that need them.

pynetdicom picks the service class of a request by its SOP class UID in one function;
replacing that function is its only seam for a service that must do more than the
event-handler protocol allows (answer before connecting elsewhere, send a report on
the same association after the response).
"""

from __future__ import annotations

from collections.abc import Iterable

from pynetdicom import association as _association
from pynetdicom.service_class import ServiceClass

_overrides: dict[str, type[ServiceClass]] = {}
_original = _association.uid_to_service_class


def _service_class(uid: str) -> type[ServiceClass]:
    return _overrides.get(str(uid)) or _original(uid)


def override(uids: Iterable[str], service_class: type[ServiceClass]) -> None:
    """Serve requests of these SOP classes with ``service_class``."""
    _overrides.update(dict.fromkeys(uids, service_class))
    _association.uid_to_service_class = _service_class

"""The IHE ATNA audit trail (DICOM PS3.15 A.5): who touched which patient's data.

Doors call the functions below at the moment something happens. They never raise: a
collector that is down is logged, and never fails the store, query or login that is
being audited. ``configure`` is called once by ``pacsnode serve`` (and ``close`` when it
stops); before that, and in commands that do not configure it, every call only logs.

Instances are named by SOP Instance UID; the studies and patients an audit message
must name are read from the index later, in the audit thread, with one query per
event. Deletion is the exception: those are read at once, before they are gone.
"""

from __future__ import annotations

import getpass
import logging
import socket
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Literal

from pacsnode.audit import messages
from pacsnode.audit.messages import (
    BEGIN_TRANSFERRING,
    MAJOR_FAILURE,
    MINOR_FAILURE,
    SERIOUS_FAILURE,
    SUCCESS,
    Code,
    Message,
    Participant,
    Study,
)
from pacsnode.config import Settings

if TYPE_CHECKING:  # the index and the trail's threads load when a trail is configured
    from pacsnode.archive.database import Database
    from pacsnode.audit.trail import Trail

__all__ = [
    "MAJOR_FAILURE",
    "MINOR_FAILURE",
    "SERIOUS_FAILURE",
    "SUCCESS",
    "Actor",
    "application_started",
    "application_stopped",
    "association_refused",
    "close",
    "command_change",
    "command_trail",
    "configuration_change",
    "configure",
    "instances_accessed",
    "instances_deleted",
    "instances_restored",
    "instances_sent",
    "instances_stored",
    "instances_updated",
    "media_exported",
    "media_imported",
    "patient_record",
    "patients_deleted",
    "patients_restored",
    "query",
    "security_alert",
    "studies_deleted",
    "transfer_begun",
    "user_authentication",
]

log = logging.getLogger("pacsnode.audit")

_trail: Trail | None = None

AlertKind = Literal["node-authentication", "restricted-function", "security-configuration"]
ConfigurationKind = Literal["network", "software", "security", "user"]

_ALERTS: dict[str, Code] = {
    "node-authentication": messages.NODE_AUTHENTICATION,
    "restricted-function": messages.RESTRICTED_FUNCTION,
    "security-configuration": messages.SECURITY_CONFIGURATION,
}
_MEDIA_TYPES: dict[str, Code] = {"CD": messages.CD, "DVD": messages.DVD, "USB": messages.USB_DISK}
_CONFIGURATION: dict[str, Code] = {
    "network": messages.NETWORK_CONFIGURATION,
    "software": messages.SOFTWARE_CONFIGURATION,
    "security": messages.SECURITY_CONFIGURATION,
    "user": messages.USER_SECURITY_ATTRIBUTES,
}


@dataclass(frozen=True)
class Actor:
    """An active participant: a remote AE, a user, or pacsnode itself."""

    user_id: str
    """AE title of a DICOM node, user name of an HTTP user, or our own AE title."""
    address: str = ""
    """Host name or IP address (Network Access Point ID); empty when unknown."""
    requestor: bool = False
    """Whether this participant started the exchange (UserIsRequestor)."""
    dicom: bool = False
    """A DICOM node: its AE title is also given as ``AETITLES=`` (PS3.15 A.5.2.2)."""

    def participant(self) -> Participant:
        alternative = f"AETITLES={self.user_id}" if self.dicom else ""
        return Participant(self.user_id, self.address, self.requestor, None, alternative)


def configure(settings: Settings, database: Database | None = None) -> None:
    """Start the trail of this process: local log, syslog collector, index lookups."""
    global _trail
    from pacsnode.audit.trail import Trail

    close()
    if not (settings.audit_syslog or settings.audit_log):
        return  # nowhere to put messages: calls only log
    try:
        _trail = Trail(settings, database)
    except (OSError, ValueError) as exc:
        log.error("audit trail not started: %s", exc)


def close() -> None:
    """Write and send what is queued, then stop (``pacsnode serve`` stopping)."""
    global _trail
    trail, _trail = _trail, None
    if trail is not None:
        trail.close()


def application_started() -> None:
    """Application Activity, Application Start."""
    if (trail := _trail) is not None:
        trail.emit(lambda _s: trail.builder.application_activity(trail.application, True))


def application_stopped() -> None:
    """Application Activity, Application Stop."""
    if (trail := _trail) is not None:
        trail.emit(lambda _s: trail.builder.application_activity(trail.application, False))


def association_refused(calling_ae: str, called_ae: str, address: str, reason: str) -> None:
    """A DIMSE association was refused (Security Alert, node authentication)."""
    log.info(
        "audit: association refused %s -> %s from %s: %s", calling_ae, called_ae, address, reason
    )
    caller = Actor(calling_ae.strip(), address, requestor=True, dicom=True)
    description = f"association {calling_ae.strip()} -> {called_ae.strip()} refused: {reason}"
    security_alert(caller, description, kind="node-authentication", subject=address or calling_ae)


def user_authentication(user: Actor, success: bool, logout: bool = False) -> None:
    """An HTTP user logged in (or failed to), or logged out."""
    log.info("audit: user %s %s", user.user_id, "logout" if logout else f"login success={success}")
    if (trail := _trail) is not None:
        outcome = SUCCESS if success else MINOR_FAILURE
        trail.emit(
            lambda _s: trail.builder.user_authentication(
                user.participant(), trail.application, logout, outcome
            )
        )


def security_alert(
    actor: Actor,
    description: str,
    *,
    kind: AlertKind = "restricted-function",
    subject: str = "",
    outcome: int = MINOR_FAILURE,
) -> None:
    """Something a security officer should see: a request for what the user or AE may
    not do ("restricted-function"), a refused node or certificate
    ("node-authentication"). ``subject`` is the node or URI concerned."""
    log.info("audit: security alert by %s: %s", actor.user_id, description)
    if (trail := _trail) is not None:
        code = _ALERTS[kind]
        target = subject or actor.address or actor.user_id
        trail.emit(
            lambda _s: trail.builder.security_alert(
                trail.application, actor.participant(), code, target, description, outcome
            )
        )


def configuration_change(
    actor: Actor, description: str, *, kind: ConfigurationKind = "software"
) -> None:
    """A user or command changed the configuration: remote AEs are "network", routing
    rules "software", TLS and access rules "security", users and roles "user"."""
    log.info("audit: configuration change by %s: %s", actor.user_id, description)
    if (trail := _trail) is not None:
        code = _CONFIGURATION[kind]
        trail.emit(
            lambda _s: trail.builder.security_alert(
                trail.application,
                actor.participant(),
                code,
                trail.application.user_id,
                description,
                0,
            )
        )


@contextmanager
def command_trail(settings: Settings, database: Database | None = None) -> Iterator[Actor]:
    """The trail of an administrative command (import, export-media, remote add),
    closed, and so sent, before the command exits; yields the user running it."""
    configure(settings, database)
    try:
        name = getpass.getuser()
    except (OSError, KeyError):  # no login name (a container without one)
        name = "unknown"
    try:
        yield Actor(name, socket.gethostname(), requestor=True)
    finally:
        close()


def command_change(
    settings: Settings, description: str, *, kind: ConfigurationKind = "software"
) -> None:
    """A configuration change by an administrative command (``pacsnode remote add``)."""
    with command_trail(settings) as user:
        configuration_change(user, description, kind=kind)


def instances_stored(source: Actor, instances: Iterable[str], *, failed: int = 0) -> None:
    """Instances received (C-STORE per association, STOW-RS per request, import):
    DICOM Instances Transferred, action C."""
    stored = list(instances)
    if (trail := _trail) is None or not (stored or failed):
        return
    outcome = _outcome(len(stored), failed)
    trail.emit(
        lambda studies: trail.builder.transferred(
            source.participant(), trail.application, studies, "C", outcome, None, _failed(failed)
        ),
        stored,
    )


def instances_sent(
    destination: Actor,
    instances: Iterable[str],
    *,
    requestor: Actor | None = None,
    failed: int = 0,
) -> None:
    """Instances sent (C-MOVE, C-GET, forwarding, export): DICOM Instances Transferred,
    action R. ``requestor`` is who asked for it when that is not the destination."""
    sent = list(instances)
    if (trail := _trail) is None or not (sent or failed):
        return
    outcome = _outcome(len(sent), failed)
    asked = requestor.participant() if requestor is not None else None
    trail.emit(
        lambda studies: trail.builder.transferred(
            trail.application,
            destination.participant(),
            studies,
            "R",
            outcome,
            asked,
            _failed(failed),
        ),
        sent,
    )


def transfer_begun(
    destination: Actor, instances: Iterable[str], *, requestor: Actor | None = None
) -> None:
    """Instances about to be sent (C-MOVE, C-GET, forwarding), called once the
    receiver is connected and before the first is sent: Begin Transferring DICOM
    Instances. ``requestor`` is who asked for it when that is not the destination."""
    sending = list(instances)
    if (trail := _trail) is None or not sending:
        return
    asked = requestor.participant() if requestor is not None else None
    trail.emit(
        lambda studies: trail.builder.transferred(
            trail.application,
            destination.participant(),
            studies,
            "E",
            SUCCESS,
            asked,
            event=BEGIN_TRANSFERRING,
        ),
        sending,
    )


def media_exported(
    user: Actor, medium: str, instances: Iterable[str], *, profile: str = "", failed: int = 0
) -> None:
    """Instances written as a file-set (``pacsnode export-media``, a ZIP download):
    Export. The medium is named by where it was written; its type (CD, DVD, USB) by
    the media profile it was written for, a URI when there is none (a download)."""
    written = list(instances)
    if (trail := _trail) is None or not (written or failed):
        return
    media_type = next(
        (code for name, code in _MEDIA_TYPES.items() if profile and f"-{name}" in profile.upper()),
        messages.URI_MEDIA,
    )
    who = user.participant()
    target = Participant(medium, media_type=media_type)
    outcome = _outcome(len(written), failed)
    trail.emit(
        lambda studies: trail.builder.media_transfer(
            who, trail.application, target, studies, True, outcome, _failed(failed)
        ),
        written,
    )


def media_imported(user: Actor, source: str, instances: Iterable[str], *, failed: int = 0) -> None:
    """Instances read from files or a file-set (``pacsnode import``): Import. The
    source is a folder whose medium we cannot know: a URI."""
    read = list(instances)
    if (trail := _trail) is None or not (read or failed):
        return
    who = user.participant()
    origin = Participant(source, media_type=messages.URI_MEDIA)
    outcome = _outcome(len(read), failed)
    trail.emit(
        lambda studies: trail.builder.media_transfer(
            who, trail.application, origin, studies, False, outcome, _failed(failed)
        ),
        read,
    )


def patient_record(
    user: Actor | None,
    patient_id: str,
    patient_name: str,
    *,
    created: bool,
    changed: Mapping[str, str] | None = None,
) -> None:
    """A patient record created, or updated with ``changed`` (keyword to new value):
    Patient Record. ``None`` is pacsnode itself."""
    if (trail := _trail) is None:
        return
    values = dict(changed or {})
    action: Literal["C", "U"] = "C" if created else "U"
    trail.emit(
        lambda _s: trail.builder.patient_record(
            user.participant() if user is not None else trail.application,
            patient_id,
            patient_name,
            action,
            values,
        )
    )


def instances_updated(
    user: Actor | None,
    changed: Mapping[str, str],
    *,
    instances: Iterable[str] = (),
    studies: Iterable[messages.Study] = (),
) -> None:
    """Instances changed in the archive (coerced on receipt), or a study's attributes
    edited: DICOM Instances Accessed, U, with the new values. ``None`` is pacsnode."""
    if (trail := _trail) is None or not changed:
        return
    values = dict(changed)
    trail.emit(
        lambda found: trail.builder.updated(
            user.participant() if user is not None else trail.application, found, values
        ),
        instances,
        studies,
    )


def instances_accessed(user: Actor, instances: Iterable[str]) -> None:
    """Instances read over HTTP (WADO-RS, WADO-URI): DICOM Instances Accessed, R."""
    read = list(instances)
    if (trail := _trail) is not None and read:
        trail.emit(lambda studies: trail.builder.accessed(user.participant(), studies, "R"), read)


def instances_deleted(user: Actor | None, instances: Iterable[str]) -> None:
    """Instances about to be deleted (call it before): DICOM Study Deleted for each
    study that goes whole, DICOM Instances Accessed with action D for a study that
    keeps other instances. ``None`` is pacsnode itself (a retention period expired)."""
    if (trail := _trail) is None:
        return
    try:
        studies = trail.studies_of(instances)
        whole = trail.whole_studies(studies)
    except Exception:
        log.exception("audit: cannot read the studies of deleted instances")
        return
    who = user.participant() if user is not None else trail.application
    gone = [study for study in studies if study.uid in whole]
    partly = [study for study in studies if study.uid not in whole]
    if gone:
        trail.emit(lambda found: trail.builder.study_deleted(who, found), studies=gone)
    if partly:
        trail.emit(lambda found: trail.builder.accessed(who, found, "D"), studies=partly)


def studies_deleted(user: Actor | None, instances: Iterable[str], description: str) -> None:
    """Studies, or some of their series or instances, deleted at a user's request or by
    retention (``None``: pacsnode itself; call it before): DICOM Study Deleted.
    ``description`` says what and how (soft or hard)."""
    log.info("audit: %s by %s", description, user.user_id if user else "pacsnode")
    if (trail := _trail) is None:
        return
    try:
        studies = trail.studies_of(instances)
    except Exception:
        log.exception("audit: cannot read the studies of deleted instances")
        return
    who = user.participant() if user is not None else trail.application
    if studies:
        trail.emit(
            lambda found: trail.builder.study_deleted(who, found, description),
            studies=studies,
        )


def instances_restored(user: Actor, instances: Iterable[str]) -> None:
    """Softly deleted instances shown again (undelete): DICOM Instances Accessed, C."""
    restored = list(instances)
    log.info("audit: %d instances restored by %s", len(restored), user.user_id)
    if (trail := _trail) is not None and restored:
        # described now: a deletion may take them again before the trail's thread runs
        trail.emit(
            lambda studies: trail.builder.accessed(user.participant(), studies, "C"),
            studies=trail.studies_of(restored),
        )


def patients_deleted(user: Actor | None, patients: Iterable[tuple[str, str]], hard: bool) -> None:
    """Patients left with nothing visible by a deletion ((Patient ID, name) each):
    Patient Record, action D, logical (soft) or permanent (hard) deletion."""
    _patient_lifecycle(user, list(patients), "D", "15" if hard else "14")


def patients_restored(user: Actor, patients: Iterable[tuple[str, str]]) -> None:
    """Patients that an undelete made visible again: Patient Record, action C."""
    _patient_lifecycle(user, list(patients), "C", "1")


def _patient_lifecycle(
    user: Actor | None, patients: list[tuple[str, str]], action: Literal["C", "D"], cycle: str
) -> None:
    if (trail := _trail) is None:
        return
    who = user.participant() if user is not None else trail.application
    for patient_id, name in patients:
        trail.emit(partial(_patient_message, trail, who, patient_id, name, action, cycle))


def _patient_message(
    trail: Trail,
    who: Participant,
    patient_id: str,
    name: str,
    action: Literal["C", "D"],
    cycle: str,
    _studies: list[Study],
) -> Message:
    return trail.builder.patient_record(who, patient_id, name, action, {}, life_cycle=cycle)


def query(requestor: Actor, sop_class: str, asked: bytes | str, syntax: str = "") -> None:
    """A C-FIND (its identifier as received, in the transfer syntax ``syntax``) or a
    QIDO-RS search (its URL): Query."""
    if (trail := _trail) is None:
        return
    encoded = asked.encode() if isinstance(asked, str) else bytes(asked)
    trail.emit(
        lambda _s: trail.builder.query(
            requestor.participant(), trail.application, sop_class, encoded, syntax
        )
    )


def _outcome(done: int, failed: int) -> int:
    if not failed:
        return SUCCESS
    return MINOR_FAILURE if done else SERIOUS_FAILURE


def _failed(failed: int) -> str:
    return f"{failed} instances failed" if failed else ""

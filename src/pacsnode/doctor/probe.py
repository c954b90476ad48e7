"""The doctor's round: every check in order, each one's failure explained, the checks
that depend on it marked skipped, so that a report always has the same checks."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from functools import partial
from typing import TypeVar

from pacsnode.config import SERVICES, Settings
from pacsnode.dimse.scu import Peer
from pacsnode.doctor import network, queries, services, storage, workflow
from pacsnode.doctor.listener import Listener
from pacsnode.doctor.report import Finding, Outcome, Report
from pacsnode.doctor.services import Negotiated, Whereabouts
from pacsnode.doctor.storage import Held
from pacsnode.net.requestor import AssociationFailed

log = logging.getLogger("pacsnode.doctor")
T = TypeVar("T")

CHECKS = (
    ("network", "tcp"),
    ("network", "tls"),
    ("network", "association"),
    ("network", "echo"),
    ("storage", "storage classes"),
    ("storage", "transfer syntaxes"),
    ("storage", "archive"),
    ("query/retrieve", "find patient"),
    ("query/retrieve", "find study"),
    ("query/retrieve", "find psonly"),
    ("query/retrieve", "relational"),
    ("query/retrieve", "move"),
    ("query/retrieve", "get"),
    ("workflow", "commit"),
    ("workflow", "mwl"),
    ("workflow", "mpps"),
)
"""Every check a report has, in the order they run."""
ANSWERED = (Outcome.OK, Outcome.WARNING)
SERVICE_OF_CHECK = {
    "echo": "echo",
    "storage classes": "store",
    "find patient": "find",
    "find study": "find",
    "find psonly": "find",
    "move": "move",
    "get": "get",
    "commit": "commit",
    "mwl": "mwl",
    "mpps": "mpps",
}


def diagnose(
    peer: Peer, settings: Settings, held: Held | None = None, timeout: float = 10.0
) -> Report:
    """Probe ``peer`` as our AE (``peer.calling_ae``), listening on our DICOM port for
    what it sends back; ``held`` is what our archive holds, to compare with."""
    report = Report(str(peer), peer.calling_ae, "")
    reached = report.add(network.tcp(peer))
    if reached.outcome is Outcome.FAILED:
        return _skip_rest(report, "no TCP connection")
    if report.add(network.tls(peer)).outcome is Outcome.FAILED:
        return _skip_rest(report, "no TLS connection")
    our_address = str(reached.data["our_address"])
    finding, association = network.associate(peer, our_address, settings.dicom_port)
    report.add(finding)
    if association is None:
        return _skip_rest(report, "no association")
    try:
        report.add(network.echo(association))
    finally:
        association.release()
    table, found = storage.probe(peer)
    report.findings += found
    report.add(storage.held_finding(table, held))
    report.learnt.storage = table
    try:
        negotiated = services.negotiate(peer)
    except AssociationFailed as exc:
        return _skip_rest(report, f"no association for the services: {exc}")
    us = _listen(settings, our_address)
    report.listening = str(us) if us.listener else us.why_not
    try:
        _services(report, peer, negotiated, us, timeout)
    finally:
        if us.listener is not None:
            us.listener.close()
    report.learnt.offers = _offers(report)
    return report


def _services(
    report: Report, peer: Peer, negotiated: Negotiated, us: Whereabouts, timeout: float
) -> None:
    sample = None
    for name in ("patient", "study", "psonly"):
        walked = _guarded(f"find {name}", partial(queries.walk, peer, name, negotiated))
        finding, found = walked if isinstance(walked, tuple) else (walked, None)
        report.add(finding)
        sample = sample or found
    steps: list[tuple[str, Callable[[], Finding]]] = [
        ("relational", lambda: queries.relational_finding(negotiated)),
        ("move", lambda: queries.move_finding(peer, negotiated, sample, us)),
        ("get", lambda: queries.get_finding(peer, negotiated, sample)),
        ("commit", lambda: workflow.commitment_finding(peer, negotiated, sample, us, timeout)),
        ("mwl", lambda: workflow.worklist_finding(peer, negotiated)),
        ("mpps", lambda: workflow.mpps_finding(negotiated)),
    ]
    for check, step in steps:
        report.add(_guarded(check, step))


def _guarded(check: str, step: Callable[[], T]) -> T | Finding:
    """A step's result; a node answering in a way no step foresaw (a data set that does
    not decode, say) fails that check, not the whole round."""
    try:
        return step()
    except Exception as exc:
        log.debug("%s failed", check, exc_info=True)
        section = next(section for section, name in CHECKS if name == check)
        return Finding(section, check, Outcome.FAILED, f"{check}: {type(exc).__name__}: {exc}")


def _listen(settings: Settings, our_address: str) -> Whereabouts:
    """Our listener on our DICOM port, where the node should send to us."""
    port = settings.dicom_port
    try:
        listener = Listener(dataclasses.replace(settings, shutdown_grace=1.0), port)
    except OSError as exc:
        why = f"cannot listen on port {port} ({exc.strerror}; is our pacsnode server running?)"
        return Whereabouts(None, our_address, port, why)
    return Whereabouts(listener, our_address, port)


def _skip_rest(report: Report, reason: str) -> Report:
    done = {finding.check for finding in report.findings}
    for section, check in CHECKS:
        if check not in done:
            report.add(Finding(section, check, Outcome.SKIPPED, reason))
    return report


def _offers(report: Report) -> tuple[str, ...]:
    """The services that answered, in the words of ``offers``."""
    answered = {
        SERVICE_OF_CHECK[f.check]
        for f in report.findings
        if f.check in SERVICE_OF_CHECK and f.outcome in ANSWERED
    }
    return tuple(service for service in SERVICES if service in answered)

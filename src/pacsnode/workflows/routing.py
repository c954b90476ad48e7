"""Auto-routing: forwarding what arrives, by rule, to other DICOM nodes.

A rule (``[[route]]`` in the config, or added through the REST API) names the
destinations and what it takes: calling and called AE, modality, SOP class and any
attribute by DICOM matching. Each stored instance (C-STORE or STOW-RS; never a
refused, failed or duplicate-kept one) is matched once, and what matches becomes a
``route`` job per destination in the durable job queue, which the DIMSE side sends
with retries. A rule with ``wait_for_stable_study`` holds its studies instead: the
first matching instance of a study queues one ``route-wait`` job, due after the wait;
it runs again later as long as the study keeps getting instances, then queues one
``route`` job per destination for the whole study as the index holds it by then.

Matching runs on every C-STORE, so the work is graded: no rules costs nothing, AE
titles are compared first, the index is read once only when a rule may still match,
and the stored file's header only when a rule matches on other attributes.

Persistence: rules added at run time live in the index (table ``route_rule``; config
rules are read-only there), shared by every node of a cluster; studies waiting to be
stable are their ``route-wait`` jobs, so that neither is lost on a restart. Each
process reads the table again when its copy is :data:`RULES_SECONDS` old, so that a
rule added or removed on one node applies on all within that time: a read of a few
rows every two seconds costs less than keeping a ``LISTEN`` connection per process,
and works the same on SQLite. The ``routes.json`` of earlier versions is moved into
the table once, as the node starts.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from pydicom import dcmread

from pacsnode.archive.attributes import Kind
from pacsnode.archive.core import Archive
from pacsnode.archive.database import aware, now
from pacsnode.archive.ingest import IngestResult, Outcome
from pacsnode.archive.matching import key_kind, value_matches
from pacsnode.archive.receiving import Origin
from pacsnode.archive.schema import instance, route_rule, series, study
from pacsnode.config import ConfigError, RemoteAE, RouteRule, route_from_table
from pacsnode.jobs.queue import Deferred
from pacsnode.jobs.workers import Workers

log = logging.getLogger("pacsnode.routing")

ROUTE_JOB = "route"
ROUTE_WAIT_JOB = "route-wait"
RULES_FILE = "routes.json"
"""Where rules added at run time were kept before they moved into the index."""
RULES_SECONDS = 2.0
"""How old a process's copy of the rule table may get before it is read again."""
MIN_DEFER = 0.2
"""Seconds; a study that is stable in less than that is looked at again after it."""
ROUTED_OUTCOMES = (Outcome.STORED, Outcome.REPLACED)


class RuleError(ValueError):
    """A rule cannot be added or removed (bad value, name taken, from the config)."""


@dataclass(frozen=True)
class Facts:
    """What a rule may look at of one stored instance."""

    sop_instance_uid: str
    sop_class_uid: str
    modality: str
    study_instance_uid: str
    path: Path
    calling_ae: str
    called_ae: str


class CompiledRule:
    """A rule with its wildcard values turned into regular expressions, once."""

    def __init__(self, rule: RouteRule, case_insensitive: bool) -> None:
        self.rule = rule
        flags = re.IGNORECASE if case_insensitive else 0
        self.match = [
            (keyword, key_kind(keyword), value, _pattern(value, flags))
            for keyword, value in rule.match
        ]

    def accepts_aes(self, calling_ae: str, called_ae: str) -> bool:
        rule = self.rule
        return (not rule.calling_ae or calling_ae in rule.calling_ae) and (
            not rule.called_ae or called_ae in rule.called_ae
        )

    def accepts_index(self, facts: Facts) -> bool:
        rule = self.rule
        return (not rule.modality or facts.modality in rule.modality) and (
            not rule.sop_class or facts.sop_class_uid in rule.sop_class
        )

    def accepts_attributes(self, attributes: dict[str, list[str]]) -> bool:
        """Each ``match`` key must match one of the attribute's values (multi-valued),
        as C-FIND matches: UID lists, date and time ranges, wildcards on text."""
        return all(
            any(_matches(kind, wanted, pattern, value) for value in attributes.get(keyword, [""]))
            for keyword, kind, wanted, pattern in self.match
        )


def _matches(kind: Kind, wanted: str, pattern: re.Pattern[str], value: str) -> bool:
    typed = value_matches(kind, wanted, value)
    return bool(pattern.fullmatch(value)) if typed is None else typed


def _pattern(value: str, flags: int) -> re.Pattern[str]:
    """DICOM wildcard matching: ``*`` any run, ``?`` one character, else literal."""
    parts = (".*" if c == "*" else "." if c == "?" else re.escape(c) for c in value)
    return re.compile("".join(parts), flags | re.DOTALL)


def _attribute_values(path: Path, keywords: Iterable[str]) -> dict[str, list[str]]:
    wanted = sorted(set(keywords))
    dataset = dcmread(path, stop_before_pixels=True, specific_tags=wanted)
    values: dict[str, list[str]] = {}
    for keyword in wanted:
        element = dataset.get(keyword)
        if element is None or element == "":
            continue
        items = element if isinstance(element, list | tuple) else [element]
        values[keyword] = [str(item).strip() for item in items] or [""]
    return values


class Router:
    def __init__(self, archive: Archive, workers: Workers) -> None:
        self.archive = archive
        self.workers = workers
        self._lock = threading.Lock()
        self._source: tuple[dict[str, str], tuple[RemoteAE, ...]] = ({}, ())
        """The rule table (name to JSON) and the remote AEs the rules were read against."""
        self._added: dict[str, RouteRule] = {}
        self._compiled = self._compile()
        self._read_at: float | None = None  # monotonic time of the last read
        workers.register(ROUTE_WAIT_JOB, self.release)
        archive.receiving.subscribe(self._received)

    def _received(self, result: IngestResult, origin: Origin) -> None:
        self.arrived(result, origin.source_ae, origin.called_ae or self.archive.settings.ae_title)

    # --- rules -------------------------------------------------------------------

    def rules(self) -> list[tuple[RouteRule, str]]:
        """Every rule with where it comes from: "config" or "api"."""
        self._current()
        return self._listed()

    def _listed(self) -> list[tuple[RouteRule, str]]:
        configured = [(rule, "config") for rule in self.archive.settings.routes]
        return configured + [(rule, "api") for rule in self._added.values()]

    def add(self, table: dict[str, Any]) -> RouteRule:
        """Add a rule at run time; it is kept in the index, for every node."""
        rule = self._checked(table)
        self._refuse_configured(rule.name)
        moment = now()
        try:
            with self.archive.database.writer.begin() as connection:
                connection.execute(
                    sa.insert(route_rule),
                    {
                        "name": rule.name,
                        "rule": json.dumps(_table(rule)),
                        "created_at": moment,
                        "updated_at": moment,
                    },
                )
        except sa.exc.IntegrityError as exc:
            raise RuleError(f"a route named {rule.name!r} exists") from exc
        self._invalidate()
        log.info("route %r added", rule.name)
        return rule

    def replace(self, name: str, table: dict[str, Any]) -> RouteRule:
        """Change a rule added at run time, in its place (its name too: a study waiting
        under the old name is then not sent)."""
        rule = self._checked(table)
        if rule.name != name:
            self._refuse_configured(rule.name)
        try:
            with self.archive.database.writer.begin() as connection:
                changed = connection.execute(
                    sa.update(route_rule)
                    .where(route_rule.c.name == name)
                    .values(name=rule.name, rule=json.dumps(_table(rule)), updated_at=now())
                ).rowcount
        except sa.exc.IntegrityError as exc:
            raise RuleError(f"a route named {rule.name!r} exists") from exc
        self._invalidate()
        if not changed:
            raise self._not_added(name)
        log.info("route %r changed", name)
        return rule

    def remove(self, name: str) -> None:
        with self.archive.database.writer.begin() as connection:
            deleted = connection.execute(
                sa.delete(route_rule).where(route_rule.c.name == name)
            ).rowcount
        self._invalidate()
        if not deleted:
            raise self._not_added(name)
        log.info("route %r removed", name)

    def _checked(self, table: dict[str, Any]) -> RouteRule:
        try:
            return route_from_table(table, tuple(self.archive.remotes.all()), "route")
        except ConfigError as exc:
            raise RuleError(str(exc)) from exc

    def _refuse_configured(self, name: str) -> None:
        """A name the config file uses; the table's own names are kept unique by it."""
        if any(existing.name == name for existing in self.archive.settings.routes):
            raise RuleError(f"a route named {name!r} exists")

    def _not_added(self, name: str) -> RuleError:
        configured = any(rule.name == name for rule in self.archive.settings.routes)
        return RuleError(
            f"route {name!r} is in the config file" if configured else f"no route {name!r}"
        )

    def _compile(self) -> tuple[CompiledRule, ...]:
        insensitive = self.archive.settings.case_insensitive_matching
        return tuple(CompiledRule(rule, insensitive) for rule, _source in self._listed())

    def _current(self) -> tuple[CompiledRule, ...]:
        """The compiled rules, after reading the rule table again if this copy is
        :data:`RULES_SECONDS` old."""
        with self._lock:
            read_at = self._read_at
            if read_at is not None and time.monotonic() - read_at < RULES_SECONDS:
                return self._compiled
            with self.archive.database.reader.connect() as connection:
                rows = connection.execute(sa.select(route_rule.c.name, route_rule.c.rule)).all()
            stored = {row.name: row.rule for row in sorted(rows)}
            remotes = tuple(self.archive.remotes.all())
            if (stored, remotes) != self._source:
                self._source = (stored, remotes)
                self._added = self._parse(stored, remotes)
                self._compiled = self._compile()
            self._read_at = time.monotonic()
            return self._compiled

    def _parse(self, stored: dict[str, str], remotes: tuple[RemoteAE, ...]) -> dict[str, RouteRule]:
        """The rules of the table as the remote AE table stands; one that does not hold
        (its destination was removed, or is not known here yet) is left out, and
        logged, until either table changes."""
        added = {}
        for name, text in stored.items():
            try:
                added[name] = route_from_table(json.loads(text), remotes, "route")
            except (ConfigError, ValueError) as exc:
                log.error("route %s ignored: %s", name, exc)
        return added

    def _invalidate(self) -> None:
        with self._lock:
            self._read_at = None

    # --- arrivals ----------------------------------------------------------------

    def arrived(self, result: IngestResult, calling_ae: str, called_ae: str) -> None:
        """Route one ingested instance; never raises, a routing fault costs no store."""
        if result.outcome not in ROUTED_OUTCOMES or not result.sop_instance_uid:
            return
        try:
            compiled = self._current()
        except sa.exc.SQLAlchemyError as exc:  # the stored instance is not lost for it
            log.error("routing of %s skipped, no rules: %s", result.sop_instance_uid, exc)
            return
        if not compiled:
            return
        calling_ae, called_ae = calling_ae.strip(), called_ae.strip()
        candidates = [c for c in compiled if c.accepts_aes(calling_ae, called_ae)]
        if not candidates:
            return
        try:
            self._route(result.sop_instance_uid, calling_ae, called_ae, candidates)
        except Exception:
            log.exception("routing of %s failed", result.sop_instance_uid)

    def _route(
        self, uid: str, calling_ae: str, called_ae: str, candidates: list[CompiledRule]
    ) -> None:
        facts = self._facts(uid, calling_ae, called_ae)
        if facts is None:
            return
        candidates = [c for c in candidates if c.accepts_index(facts)]
        keywords = {condition[0] for c in candidates for condition in c.match}
        attributes = _attribute_values(facts.path, keywords) if keywords else {}
        for compiled in candidates:
            if compiled.accepts_attributes(attributes):
                self._dispatch(compiled.rule, facts)

    def _facts(self, uid: str, calling_ae: str, called_ae: str) -> Facts | None:
        query = (
            sa.select(
                instance.c.sop_class_uid,
                series.c.modality,
                study.c.study_instance_uid,
                instance.c.file_path,
            )
            .join(series, series.c.pk == instance.c.series_pk)
            .join(study, study.c.pk == series.c.study_pk)
            .where(instance.c.sop_instance_uid == uid, instance.c.rejection.is_(None))
        )
        with self.archive.database.reader.connect() as connection:
            row = connection.execute(query).first()
        if row is None:
            return None
        return Facts(
            uid,
            row.sop_class_uid,
            row.modality or "",
            row.study_instance_uid,
            self.archive.storage.absolute(row.file_path),
            calling_ae,
            called_ae,
        )

    def _dispatch(self, rule: RouteRule, facts: Facts) -> None:
        if rule.wait_for_stable_study > 0:
            self._hold(rule, facts.study_instance_uid)
            return
        for destination in rule.destinations:
            self.workers.enqueue(
                ROUTE_JOB,
                _payload(rule, destination, [facts.sop_instance_uid], None),
                f"route {rule.name}: {facts.sop_instance_uid} to {destination}",
            )

    # --- stable studies ----------------------------------------------------------

    def _hold(self, rule: RouteRule, study_uid: str) -> None:
        """One waiting job per rule and study, due when the study may be stable."""
        self.workers.enqueue_once(
            ROUTE_WAIT_JOB,
            {"rule": rule.name, "study": study_uid},
            f"route {rule.name}: study {study_uid} once stable",
            queue_key=f"route-wait/{rule.name}/{study_uid}",
            delay=rule.wait_for_stable_study,
        )

    def release(self, payload: dict[str, Any]) -> None:
        """The waiting job: queue the study to each destination once it had no new
        instance for the rule's wait, else ask to run again when it may have."""
        name, uid = payload["rule"], payload["study"]
        rule = next((r for r, _source in self.rules() if r.name == name), None)
        if rule is None:
            log.info("route %s: removed while study %s was waiting; not sent", name, uid)
            return
        updated = self._study_updated(uid)
        if updated is None:
            log.info("route %s: study %s was deleted while waiting; not sent", name, uid)
            return
        remaining = (updated - now()).total_seconds() + rule.wait_for_stable_study
        if remaining > 0:
            raise Deferred(max(remaining, MIN_DEFER))
        for destination in rule.destinations:
            self.workers.enqueue(
                ROUTE_JOB,
                _payload(rule, destination, [], uid),
                f"route {rule.name}: study {uid} to {destination}",
                queue_key=f"route/{destination}/{uid}",
            )

    def _study_updated(self, uid: str) -> datetime | None:
        query = sa.select(study.c.updated_at).where(study.c.study_instance_uid == uid)
        with self.archive.database.reader.connect() as connection:
            updated = connection.execute(query).scalar()
        return None if updated is None else aware(updated)


def _payload(
    rule: RouteRule, destination: str, instances: list[str], study_uid: str | None
) -> dict[str, Any]:
    """Everything the job needs, so that it runs the same after the rule is removed."""
    return {
        "rule": rule.name,
        "destination": destination,
        "instances": instances,
        "study": study_uid,
        "transfer_syntax": rule.transfer_syntax,
        "allow_lossy": rule.allow_lossy,
        "commit": rule.commit,
        "deidentify": list(rule.deidentify_options) if rule.deidentify else None,
    }


def _table(rule: RouteRule) -> dict[str, Any]:
    """A rule as its config table (and as the REST API shows it)."""
    table = asdict(rule)
    table["match"] = dict(rule.match)
    for key, value in table.items():
        if isinstance(value, tuple):
            table[key] = list(value)
    return table


def rule_json(rule: RouteRule, source: str) -> dict[str, Any]:
    return {**_table(rule), "source": source}


def import_rules_file(archive: Archive) -> None:
    """Move the rules an earlier version kept in ``routes.json`` into the index, once
    (the file is renamed ``routes.json.imported``)."""
    path = archive.settings.data_dir / RULES_FILE
    if not path.is_file():
        return
    moment = now()
    imported = 0
    with archive.database.writer.begin() as connection:
        taken = set(connection.execute(sa.select(route_rule.c.name)).scalars())
        for table in json.loads(path.read_text()):
            name = str(table.get("name", ""))
            if not name or name in taken:
                continue
            taken.add(name)
            connection.execute(
                sa.insert(route_rule),
                {
                    "name": name,
                    "rule": json.dumps(table),
                    "created_at": moment,
                    "updated_at": moment,
                },
            )
            imported += 1
    path.replace(path.with_name(f"{RULES_FILE}.imported"))
    log.info("%d routes moved from %s into the index", imported, path)

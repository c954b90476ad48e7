"""Assigning authorities and the issuer heuristic (digest-002 §8.3).

Several sites use the same Patient IDs; an issuer tells their patients apart. The
``[[authority]]`` table names the issuers the archive knows (authority 0 is the
default), and each remote AE may name a ``fallback_authority``. With
``issuer_heuristic`` on:

* an object received (C-STORE, C-GET, STOW-RS, import) gets its issuers from the
  configuration only: its sender's fallback authority, else authority 0. Its file keeps
  its bytes; the index records the resolved issuers (of Patient ID, and of Admission ID
  when it has one), and what goes out carries them (archive/outgoing.py), the object's
  own kept in Original Attributes Sequence;
* a request with an element but not its issuer (Patient ID in C-FIND, C-MOVE and
  C-GET; Patient ID, Admission ID and Accession Number in worklist queries; Accession
  Number in MPPS N-CREATE) gets authority 0's issuer when its calling AE title is a
  session's (``session_ae_pattern``), else the calling AE's fallback authority; a
  request naming an issuer no authority knows matches nothing.

Off (the default), nothing here changes anything. Run-time entries (REST, CLI) live
in the index database and override the config file's entries of the same id, as the
remote AE table does.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import asdict
from typing import Any

import sqlalchemy as sa
from pydicom import Dataset

from pacsnode.archive.database import Database, now
from pacsnode.archive.remotes import Remotes
from pacsnode.archive.schema import authority as authority_table
from pacsnode.config import Authority, Settings
from pacsnode.errors import FieldError

CACHE_SECONDS = 2.0
ENTITY_ID_TYPES = ("DNS", "EUI64", "ISO", "URI", "UUID", "X400", "X500")
ISSUER_SEQUENCES = {
    "AdmissionID": "IssuerOfAdmissionIDSequence",
    "AccessionNumber": "IssuerOfAccessionNumberSequence",
}
"""Elements whose issuer is an item (Local Namespace, Universal Entity ID and type)."""


class AuthorityError(FieldError):
    """An entry that cannot be written; ``field`` names the offending field."""


class AuthorityNotFound(LookupError):
    """No authority with that id."""


class NoMatch(Exception):
    """A request names an issuer no authority knows: it matches nothing."""


def authority_as_json(authority: Authority, source: str) -> dict[str, Any]:
    return {**asdict(authority), "source": source}


def authority_from_json(values: dict[str, Any]) -> Authority:
    """An entry as the REST API and the CLI receive it; the error names the field."""
    unknown = set(values) - {"id", "issuer", "universal_entity_id", "universal_entity_id_type"}
    unknown.discard("source")
    if unknown:
        raise AuthorityError(f"unknown fields: {', '.join(sorted(unknown))}", sorted(unknown)[0])
    number = values.get("id")
    if isinstance(number, bool) or not isinstance(number, int) or number < 0:
        raise AuthorityError("id must be a whole number, 0 or more", "id")
    texts = {}
    for name in ("issuer", "universal_entity_id", "universal_entity_id_type"):
        value = values.get(name, "")
        if not isinstance(value, str):
            raise AuthorityError(f"{name} must be a string", name)
        texts[name] = value.strip()
    if not texts["issuer"] or len(texts["issuer"]) > 64 or "\\" in texts["issuer"]:
        raise AuthorityError("issuer must be 1 to 64 characters without '\\'", "issuer")
    kind = texts["universal_entity_id_type"]
    if kind and kind not in ENTITY_ID_TYPES:
        raise AuthorityError(
            f"universal_entity_id_type must be one of {', '.join(ENTITY_ID_TYPES)}",
            "universal_entity_id_type",
        )
    if bool(kind) != bool(texts["universal_entity_id"]):
        raise AuthorityError(
            "universal_entity_id and universal_entity_id_type go together", "universal_entity_id"
        )
    return Authority(number, **texts)


class Authorities:
    """The authority table: the config file's entries, and run-time ones over them."""

    def __init__(self, settings: Settings, database: Database) -> None:
        self.database = database
        self._configured = {entry.id: entry for entry in settings.authorities}
        self._lock = threading.Lock()
        self._stored: dict[int, Authority] = {}
        self._read_at: float | None = None

    def entries(self) -> list[tuple[Authority, str]]:
        """Every authority by id, with where it comes from: config, database or both."""
        stored = self._database_entries()
        found = []
        for number in sorted(set(self._configured) | set(stored)):
            sources = [
                n for n, t in (("config", self._configured), ("database", stored)) if number in t
            ]
            found.append((stored.get(number) or self._configured[number], "+".join(sources)))
        return found

    def get(self, number: int) -> Authority | None:
        return self._database_entries().get(number) or self._configured.get(number)

    def known(self, issuer: str) -> Authority | None:
        """The authority an issuer names: its Issuer of Patient ID (the Local Namespace
        Entity ID of an item) or its Universal Entity ID."""
        text = issuer.strip()
        entries = [entry for entry, _source in self.entries()]
        return next(
            (e for e in entries if text in (e.issuer, e.universal_entity_id) and text), None
        )

    def put(self, entry: Authority) -> bool:
        """Add or replace a run-time entry; returns whether it is new to the database."""
        values = {k: v for k, v in asdict(entry).items() if k != "id"}
        moment = now()
        with self.database.writer.begin() as connection:
            where = authority_table.c.id == entry.id
            existing = connection.execute(sa.select(authority_table.c.id).where(where)).first()
            if existing is None:
                connection.execute(
                    sa.insert(authority_table),
                    {"id": entry.id, **values, "created_at": moment, "updated_at": moment},
                )
            else:
                connection.execute(
                    sa.update(authority_table).where(where).values(**values, updated_at=moment)
                )
        self._invalidate()
        return existing is None

    def delete(self, number: int) -> None:
        """Remove a run-time entry; a config file entry can only be overridden."""
        with self.database.writer.begin() as connection:
            deleted = connection.execute(
                sa.delete(authority_table).where(authority_table.c.id == number)
            ).rowcount
        self._invalidate()
        if deleted:
            return
        if number in self._configured:
            raise AuthorityError(
                f"authority {number} comes from the config file: remove it there and restart"
            )
        raise AuthorityNotFound(f"no authority {number}")

    def _database_entries(self) -> dict[int, Authority]:
        with self._lock:
            if self._read_at is None or time.monotonic() - self._read_at >= CACHE_SECONDS:
                with self.database.reader.connect() as connection:
                    rows = connection.execute(sa.select(authority_table)).all()
                self._stored = {
                    row.id: Authority(
                        row.id, row.issuer, row.universal_entity_id, row.universal_entity_id_type
                    )
                    for row in rows
                }
                self._read_at = time.monotonic()
            return self._stored

    def _invalidate(self) -> None:
        with self._lock:
            self._read_at = None


def issuer_item(authority: Authority) -> Dataset:
    """An Issuer of Admission ID or Accession Number Sequence item (HL7 v2 HD)."""
    item = Dataset()
    item.LocalNamespaceEntityID = authority.issuer
    if authority.universal_entity_id:
        item.UniversalEntityID = authority.universal_entity_id
        item.UniversalEntityIDType = authority.universal_entity_id_type
    return item


def _qualifiers(authority: Authority) -> Dataset:
    item = Dataset()
    item.UniversalEntityID = authority.universal_entity_id
    item.UniversalEntityIDType = authority.universal_entity_id_type
    return item


def _item_issuer(dataset: Dataset, sequence: str) -> str:
    items = dataset.get(sequence) or []
    first = items[0] if len(items) else Dataset()
    for keyword in ("LocalNamespaceEntityID", "UniversalEntityID"):
        if first.get(keyword):
            return str(first.get(keyword))
    return ""


def _wildcard(text: str) -> bool:
    return "*" in text or "?" in text


class Issuers:
    """The heuristic: which issuer an object or a request gets."""

    def __init__(self, settings: Settings, authorities: Authorities, remotes: Remotes) -> None:
        self.enabled = settings.issuer_heuristic
        self.session = re.compile(settings.session_ae_pattern)
        self.authorities = authorities
        self.remotes = remotes

    def default(self) -> Authority:
        return self.authorities.get(0) or Authority(0, "")

    def of_sender(self, ae_title: str) -> Authority | None:
        """The authority of what an AE sends (None with the heuristic off): its fallback
        authority, else the default; doors without an AE (STOW-RS, import) get the
        default too."""
        return self._fallback(ae_title) if self.enabled else None

    def of_requestor(self, ae_title: str) -> Authority:
        """The authority of an element a request names without its issuer."""
        if self.session.match(ae_title.strip()):
            return self.default()
        return self._fallback(ae_title)

    def _fallback(self, ae_title: str) -> Authority:
        remote = self.remotes.get(ae_title) if ae_title.strip() else None
        if remote is not None and remote.fallback_authority is not None:
            found = self.authorities.get(remote.fallback_authority)
            if found is not None:
                return found
        return self.default()

    def _resolved(self, given: str, requestor: str) -> Authority | None:
        """The authority of an element: the one its given issuer names (NoMatch if none
        does), else the requestor's; None for a wildcard issuer, matched as it is."""
        if not given:
            return self.of_requestor(requestor)
        if _wildcard(given):
            return None
        found = self.authorities.known(given)
        if found is None:
            raise NoMatch(f"issuer {given!r} is no known authority")
        return found

    def patient_keys(self, keys: dict[str, str], requestor: str) -> dict[str, str]:
        """Q/R keys with the issuer of their Patient ID resolved; raises NoMatch."""
        if not self.enabled or not keys.get("PatientID"):
            return keys
        found = self._resolved(keys.get("IssuerOfPatientID", ""), requestor)
        return keys if found is None else {**keys, "IssuerOfPatientID": found.issuer}

    def worklist_keys(
        self, keys: dict[str, str], sequences: dict[str, dict[str, str]], requestor: str
    ) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
        """Worklist keys with the issuers of Patient ID, Admission ID and Accession
        Number resolved; raises NoMatch."""
        keys = self.patient_keys(keys, requestor)
        if not self.enabled:
            return keys, sequences
        sequences = dict(sequences)
        for element, sequence in ISSUER_SEQUENCES.items():
            if not keys.get(element):
                continue
            item = sequences.get(sequence, {})
            given = item.get("LocalNamespaceEntityID") or item.get("UniversalEntityID", "")
            found = self._resolved(given, requestor)
            if found is not None and not given:
                sequences[sequence] = {**item, "LocalNamespaceEntityID": found.issuer}
        return keys, sequences

    def amend_step(self, dataset: Dataset, requestor: str) -> None:
        """Give each scheduled step of an MPPS N-CREATE that has an Accession Number but
        no issuer its resolved issuer (an unknown one is left as it is)."""
        if not self.enabled:
            return
        for step in dataset.get("ScheduledStepAttributesSequence") or []:
            if step.get("AccessionNumber") and not _item_issuer(
                step, "IssuerOfAccessionNumberSequence"
            ):
                step.IssuerOfAccessionNumberSequence = [issuer_item(self.of_requestor(requestor))]

    def amend_item(self, dataset: Dataset) -> None:
        """A worklist item scheduled without issuers gets the default authority's: the
        RIS that schedules is the archive's own site."""
        if not self.enabled:
            return
        default = self.default()
        if dataset.get("PatientID") and not dataset.get("IssuerOfPatientID"):
            dataset.IssuerOfPatientID = default.issuer
        for element, sequence in ISSUER_SEQUENCES.items():
            if dataset.get(element) and not _item_issuer(dataset, sequence):
                setattr(dataset, sequence, [issuer_item(default)])


def resolve_received(dataset: Dataset, authority: Authority) -> tuple[bool, bool]:
    """Give a received object's data set (as the index reads it) the authority's
    issuers; returns whether its patient's, and its study's, values now differ from
    the object's own."""
    before = (
        str(dataset.get("IssuerOfPatientID") or ""),
        _json(dataset, "IssuerOfPatientIDQualifiersSequence"),
        _json(dataset, "IssuerOfAdmissionIDSequence"),
    )
    dataset.IssuerOfPatientID = authority.issuer
    if authority.universal_entity_id:
        dataset.IssuerOfPatientIDQualifiersSequence = [_qualifiers(authority)]
    elif "IssuerOfPatientIDQualifiersSequence" in dataset:
        del dataset.IssuerOfPatientIDQualifiersSequence
    if dataset.get("AdmissionID"):
        dataset.IssuerOfAdmissionIDSequence = [issuer_item(authority)]
    patient_changed = before[:2] != (
        authority.issuer,
        _json(dataset, "IssuerOfPatientIDQualifiersSequence"),
    )
    return patient_changed, before[2] != _json(dataset, "IssuerOfAdmissionIDSequence")


def _json(dataset: Dataset, keyword: str) -> str:
    items = dataset.get(keyword) or []
    return repr([item.to_json_dict() for item in items])

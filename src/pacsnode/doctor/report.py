"""The doctor's report: findings in sections, each with its outcome and a hint.

A finding is what an administrator acts on: a one-line summary, a hint in plain words
when something is wrong, and the data it was read from (statuses, counts, UIDs) for
scripts reading the JSON.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Outcome(StrEnum):
    OK = "ok"
    WARNING = "warning"
    """It works, with a caveat the hint names."""
    FAILED = "failed"
    NOT_OFFERED = "not offered"
    """The node does not provide the service (it refused the presentation context)."""
    SKIPPED = "skipped"
    """Not probed: an earlier step failed, or there was nothing to probe with."""


SECTIONS = ("network", "storage", "query/retrieve", "workflow")


@dataclass
class Finding:
    section: str
    check: str
    outcome: Outcome
    summary: str
    hint: str = ""
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class Learnt:
    """What the probes found out, in the words of a remote AE entry."""

    offers: tuple[str, ...] = ()
    """The services that answered: echo, store, find, move, get, commit, mwl, mpps."""
    storage: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Storage SOP class to the transfer syntaxes accepted for it."""


@dataclass
class Report:
    remote: str
    calling_ae: str
    listening: str
    """Where we listened for C-MOVE sub-operations and reports (host:port), or why not."""
    findings: list[Finding] = field(default_factory=list)
    learnt: Learnt = field(default_factory=Learnt)

    def add(self, finding: Finding) -> Finding:
        self.findings.append(finding)
        return finding

    def finding(self, check: str) -> Finding:
        return next(f for f in self.findings if f.check == check)

    @property
    def failed(self) -> bool:
        return any(f.outcome is Outcome.FAILED for f in self.findings)

    def as_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.as_json(), indent=1)

"""The durable queue of outbound work: rows in the index database.

Everything pacsnode sends on its own initiative (storage commitment reports on a new
association, MPPS forwards, instance availability notifications, routing) is a job
row first, so that it survives a crash or a restart and is retried while the peer is
away. A worker claims a due job in one statement: ``FOR UPDATE SKIP LOCKED`` keeps two
workers off the same row on PostgreSQL; on SQLite the claim runs under the database's
single write lock, which serialises claims just as well.

A claim is a lease: the claiming process (``node:pid``) renews it while the job runs.
A process that dies (``kill -9``, a lost node) stops renewing, and once the lease has
lapsed any worker of any process or node takes the job over.

A job queued once (:meth:`JobQueue.enqueue_once`) carries a key that a partial unique
index allows on one pending job only: two nodes queueing the same job at the same
moment make one, whatever their timing, and a job that would become pending beside
another with its key gives way to it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from functools import cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from pacsnode.archive.database import Database, aware, now
from pacsnode.archive.schema import job


class JobStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class Job:
    pk: int
    kind: str
    payload: dict[str, Any]
    status: JobStatus
    attempts: int
    max_attempts: int
    next_run_at: datetime
    last_error: str | None
    description: str
    queue_key: str | None
    created_at: datetime
    updated_at: datetime
    result: dict[str, Any] | None = None
    """What a long job reports as it runs and at its end (a retrieve's counts)."""
    claimed_by: str | None = None
    lease_until: datetime | None = None
    once_key: str | None = None

    def as_json(self) -> dict[str, Any]:
        """The job as the REST API shows it."""
        return {
            "id": self.pk,
            "kind": self.kind,
            "status": self.status.value,
            "description": self.description,
            "attempts": self.attempts,
            "max_attempts": self.max_attempts,
            "next_run_at": self.next_run_at.isoformat(),
            "last_error": self.last_error,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "payload": self.payload,
            "result": self.result,
        }


def _job(row: Any) -> Job:
    values = dict(row._mapping)
    values["payload"] = json.loads(values["payload"])
    values["result"] = json.loads(values["result"]) if values.get("result") else None
    values["status"] = JobStatus(values["status"])
    for key in ("next_run_at", "created_at", "updated_at", "lease_until"):
        if values.get(key) is not None:
            values[key] = aware(values[key])
    return Job(**values)


class JobError(LookupError):
    """No such job, or not in a state that allows the change."""


class Abandoned(Exception):
    """Raised by a handler whose job cannot succeed by running again (a printer refused
    the film, and a retry would print again what did print): it fails at once."""


class Deferred(Exception):
    """Raised by a handler whose job cannot be done yet: it runs again in ``seconds``,
    without counting a failed attempt (a study not yet stable, say)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"deferred for {seconds:.1f} s")
        self.seconds = seconds


@dataclass(frozen=True)
class _ClaimStatements:
    due: sa.Select[tuple[int]]
    """The pk of the job due longest (bound: ``moment``)."""
    claim: sa.Update
    """Its claim (bound: ``moment``, ``owner``, ``lease_until``)."""


@cache
def _claim_statements(kinds: tuple[str, ...], postgres: bool) -> _ClaimStatements:
    """Built once per set of kinds: building them cost more than running them."""
    moment: sa.BindParameter[datetime] = sa.bindparam("moment")
    takeable = sa.or_(
        sa.and_(job.c.status == JobStatus.PENDING, job.c.next_run_at <= moment),
        sa.and_(job.c.status == JobStatus.RUNNING, job.c.lease_until < moment),
    )
    earlier = job.alias("earlier")
    unfinished = (JobStatus.PENDING, JobStatus.RUNNING, JobStatus.FAILED)
    waits_for_earlier = sa.exists().where(
        earlier.c.queue_key == job.c.queue_key,
        earlier.c.pk < job.c.pk,
        earlier.c.status.in_(unfinished),
    )
    due = (
        sa.select(job.c.pk)
        .where(takeable)
        .where(job.c.kind.in_(list(kinds)))
        .where(sa.or_(job.c.queue_key.is_(None), ~waits_for_earlier))
        .order_by(job.c.next_run_at, job.c.pk)
        .limit(1)
    )
    locked = due.with_for_update(skip_locked=True) if postgres else due
    claim = (
        sa.update(job)
        .where(job.c.pk == locked.scalar_subquery(), takeable)
        .values(
            status=JobStatus.RUNNING,
            claimed_by=sa.bindparam("owner"),
            lease_until=sa.bindparam("lease_until"),
            updated_at=moment,
        )
        .returning(*job.c)
    )
    return _ClaimStatements(due, claim)


def _pending_with(once_key: str) -> sa.Select[tuple[int]]:
    return (
        sa.select(job.c.pk)
        .where(job.c.once_key == once_key, job.c.status == JobStatus.PENDING)
        .limit(1)
    )


_PENDING_ONCE = job.c.status == JobStatus.PENDING
"""The predicate of the partial unique index on ``once_key``."""
SUPERSEDED = "superseded by a pending job queued once with the same key"


LEASE = 30.0
"""Seconds a claim holds without renewal; workers renew every third of it."""


class JobQueue:
    def __init__(
        self,
        database: Database,
        max_attempts: int = 10,
        backoff: float = 5.0,
        lease: float = LEASE,
    ) -> None:
        self.database = database
        self.max_attempts = max_attempts
        self.backoff = backoff
        """Seconds before the first retry; each further retry waits twice as long."""
        self.lease = lease
        self._postgres = database.writer.dialect.name == "postgresql"

    def enqueue(
        self,
        kind: str,
        payload: dict[str, Any],
        description: str = "",
        queue_key: str | None = None,
        delay: float = 0.0,
    ) -> int:
        """Queue a job, due in ``delay`` seconds; jobs with the same ``queue_key`` run in
        the order queued."""
        with self.database.writer.begin() as connection:
            inserted = connection.execute(
                sa.insert(job).returning(job.c.pk),
                self._row(kind, payload, description, queue_key, delay),
            )
            return int(inserted.scalar_one())

    def enqueue_once(
        self,
        kind: str,
        payload: dict[str, Any],
        description: str,
        queue_key: str,
        delay: float = 0.0,
    ) -> int | None:
        """Queue a job unless one with ``queue_key`` is pending; the new job's pk, or None.

        The common case (one is pending) costs one indexed read and no write lock. The
        insert itself gives way to a pending job of the same key through the unique
        index on ``once_key``: two nodes or processes racing make one job."""
        if self.pending(queue_key):
            return None
        dialect = postgresql if self._postgres else sqlite
        insert = (
            dialect.insert(job)
            .on_conflict_do_nothing(index_elements=[job.c.once_key], index_where=_PENDING_ONCE)
            .returning(job.c.pk)
        )
        row = self._row(kind, payload, description, queue_key, delay)
        with self.database.writer.begin() as connection:
            return connection.execute(insert, {**row, "once_key": queue_key}).scalar()

    def pending(self, queue_key: str) -> bool:
        """Whether a job queued once with this key waits to run (a running one does
        not count)."""
        with self.database.reader.connect() as connection:
            return connection.execute(_pending_with(queue_key)).first() is not None

    def _row(
        self,
        kind: str,
        payload: dict[str, Any],
        description: str,
        queue_key: str | None,
        delay: float,
    ) -> dict[str, Any]:
        moment = now()
        return {
            "kind": kind,
            "payload": json.dumps(payload),
            "status": JobStatus.PENDING,
            "max_attempts": self.max_attempts,
            "next_run_at": moment + timedelta(seconds=delay),
            "description": description,
            "queue_key": queue_key,
            "created_at": moment,
            "updated_at": moment,
        }

    def claim(self, kinds: Sequence[str], owner: str = "") -> Job | None:
        """Take the job that has been due longest, of one of ``kinds``, for running:
        a pending one, or one whose claimant's lease lapsed.

        Whether one is due is read first: the workers of every process ask each
        second, and a write transaction on an empty queue would take SQLite's write
        lock from the instances being indexed meanwhile.
        """
        statements = _claim_statements(tuple(kinds), self._postgres)
        moment = now()
        with self.database.reader.connect() as connection:
            if connection.execute(statements.due, {"moment": moment}).first() is None:
                return None
        lease_until = moment + timedelta(seconds=self.lease)
        params = {"moment": moment, "owner": owner, "lease_until": lease_until}
        with self.database.writer.begin() as connection:
            row = connection.execute(statements.claim, params).first()
        return None if row is None else _job(row)

    def renew(self, owner: str, pks: Sequence[int]) -> None:
        """Extend the leases of the jobs ``owner`` is running."""
        if not pks:
            return
        with self.database.writer.begin() as connection:
            connection.execute(
                sa.update(job)
                .where(job.c.pk.in_(list(pks)), job.c.claimed_by == owner)
                .where(job.c.status == JobStatus.RUNNING)
                .values(lease_until=now() + timedelta(seconds=self.lease))
            )

    def complete(self, pk: int) -> None:
        self._update(
            pk,
            status=JobStatus.DONE,
            last_error=None,
            attempts=job.c.attempts + 1,
            lease_until=None,
        )

    def fail(self, claimed: Job, error: str, final: bool = False) -> JobStatus:
        """Record a failed attempt: retry later with backoff, or give up at the limit
        (or at once when ``final``)."""
        attempts = claimed.attempts + 1
        values = {"attempts": attempts, "last_error": error[:2000]}
        if final or attempts >= claimed.max_attempts:
            self._update(claimed.pk, status=JobStatus.FAILED, next_run_at=now(), **values)
            return JobStatus.FAILED
        retry_at = now() + timedelta(seconds=self.backoff * 2 ** (attempts - 1))
        status = self._back_to_pending(claimed.pk, next_run_at=retry_at, **values)
        return status or JobStatus.PENDING

    def defer(self, claimed: Job, seconds: float) -> None:
        """Put a claimed job back, due in ``seconds``, its attempts unchanged."""
        self._back_to_pending(claimed.pk, next_run_at=now() + timedelta(seconds=seconds))

    def _back_to_pending(self, pk: int, *where: Any, **values: Any) -> JobStatus | None:
        """Make a job pending again (if it still meets ``where``; None if not). A job
        queued once whose key another pending job holds by now (queued meanwhile, by
        any node) is cancelled instead: that one does its work when it runs."""
        try:
            changed = self._update(pk, *where, status=JobStatus.PENDING, **values)
            return JobStatus.PENDING if changed else None
        except sa.exc.IntegrityError:
            values.pop("last_error", None)
            self._update(pk, *where, status=JobStatus.CANCELLED, last_error=SUPERSEDED, **values)
            return JobStatus.CANCELLED

    def retry(self, pk: int) -> Job:
        """Run a failed or cancelled job again, now, with a fresh count of attempts."""
        try:
            return self._change(
                pk,
                {JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.PENDING},
                status=JobStatus.PENDING,
                attempts=0,
                next_run_at=now(),
            )
        except sa.exc.IntegrityError as exc:
            raise JobError(f"job {pk}: another job with its key is pending") from exc

    def cancel(self, pk: int) -> Job:
        return self._change(pk, {JobStatus.PENDING, JobStatus.FAILED}, status=JobStatus.CANCELLED)

    def recover(self, node: str) -> int:
        """Jobs an earlier run of this node left running run again now, without waiting
        for their leases to lapse; returns how many. Other nodes' jobs are theirs."""
        ours = (
            job.c.status == JobStatus.RUNNING,
            sa.or_(
                job.c.claimed_by.is_(None), job.c.claimed_by.startswith(f"{node}:", autoescape=True)
            ),
        )
        with self.database.reader.connect() as connection:
            pks = list(connection.execute(sa.select(job.c.pk).where(*ours)).scalars())
        statuses = [self._back_to_pending(pk, *ours, lease_until=None) for pk in pks]
        return statuses.count(JobStatus.PENDING)

    def report(self, pk: int, result: dict[str, Any]) -> None:
        """Record what a running job has done so far, or its final report."""
        self._update(pk, result=json.dumps(result))

    def get(self, pk: int) -> Job:
        with self.database.reader.connect() as connection:
            row = connection.execute(sa.select(job).where(job.c.pk == pk)).first()
        if row is None:
            raise JobError(f"no job {pk}")
        return _job(row)

    def list(self, status: str | None = None, limit: int = 100) -> list[Job]:
        query = sa.select(job).order_by(job.c.pk.desc()).limit(limit)
        if status:
            query = query.where(job.c.status == status)
        with self.database.reader.connect() as connection:
            return [_job(row) for row in connection.execute(query)]

    def _update(self, pk: int, *where: Any, **values: Any) -> int:
        """Change a job (if it meets ``where``); how many rows changed."""
        with self.database.writer.begin() as connection:
            result = connection.execute(
                sa.update(job).where(job.c.pk == pk, *where).values(**values, updated_at=now())
            )
            return int(result.rowcount)

    def _change(self, pk: int, allowed: set[JobStatus], **values: Any) -> Job:
        """The job as the change left it: a worker may take it the moment after."""
        with self.database.writer.begin() as connection:
            current = connection.execute(sa.select(job.c.status).where(job.c.pk == pk)).scalar()
            if current is None:
                raise JobError(f"no job {pk}")
            if current not in allowed:
                raise JobError(f"job {pk} is {current}")
            changed = connection.execute(
                sa.update(job)
                .where(job.c.pk == pk)
                .values(**values, updated_at=now())
                .returning(*job.c)
            ).one()
        return _job(changed)

"""Who may use the HTTP door: users with a password and a role, and their API tokens.

Users come from two places, as remote AEs do: ``http_users`` entries of the config
file (read-only here; the way to get the first administrator in) and the index
database (``pacsnode user``, ``/api/users``). A name in the config file wins over the
same name in the database, and the database refuses to take one.

Roles are ordered: a viewer reads, an operator also changes the workflow (stores,
retrieves, worklist, jobs), an admin also changes configuration. Which request needs
which role is the web door's business (:mod:`pacsnode.web.roles`).

An API token is an opaque secret, ``pnt_`` and 43 random characters, shown once when
it is made. The database keeps only its SHA-256: the secret is random and long, so a
slow hash would add nothing but a cost on every request.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import secrets
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, cast, get_args

import sqlalchemy as sa

from pacsnode.archive.database import Database, aware, now
from pacsnode.archive.schema import api_token, http_user
from pacsnode.config import ConfigError
from pacsnode.errors import FieldError

Role = Literal["viewer", "operator", "admin"]
ROLES: tuple[Role, ...] = get_args(Role)
"""Weakest first: each role may do what the ones before it may."""
CONFIG_ROLE: Role = "admin"
"""The role of an ``http_users`` entry that names none: before users and roles, every
configured user could do everything, and such a config must keep working."""
HASH_SCHEME = "pbkdf2_sha256"
HASH_ITERATIONS = 600_000
"""OWASP's 2023 figure for PBKDF2-HMAC-SHA256: slow enough to make a stolen config
file or database expensive to crack, fast enough (a fraction of a second) to check
once per user."""
TOKEN_PREFIX = "pnt_"
"""Marks a pacsnode API token, so that a bearer token is told from a JWT at a glance,
and so that secret scanners can find one pasted where it should not be."""
MIN_PASSWORD_LENGTH = 8
LAST_USED_RESOLUTION = timedelta(minutes=1)
"""How stale ``last_used_at`` may get: writing it on every request would put a write
(and SQLite's write lock) on every read."""
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")


class UserError(FieldError):
    """A user or token that cannot be written; ``field`` names the offending field."""


class UserConflict(UserError):
    """A write that clashes with what exists: a taken name, a config file entry."""


class UserNotFound(LookupError):
    """No such user or token."""


class LoginRefused(Exception):
    """Credentials that do not let the caller in; the message says why, for the log
    only: the caller is told no more than that they were refused."""


@dataclass(frozen=True)
class User:
    name: str
    role: Role
    disabled: bool = False
    source: str = "database"
    """"database", or "config" for an ``http_users`` entry."""
    created_at: datetime | None = None

    def as_json(self) -> dict[str, Any]:
        created = self.created_at.isoformat() if self.created_at else None
        return {
            "name": self.name,
            "role": self.role,
            "disabled": self.disabled,
            "source": self.source,
            "created_at": created,
        }


@dataclass(frozen=True)
class Token:
    id: int
    user: str
    label: str
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None

    def as_json(self) -> dict[str, Any]:
        def moment(value: datetime | None) -> str | None:
            return value.isoformat() if value else None

        return {
            "id": self.id,
            "user": self.user,
            "label": self.label,
            "created_at": moment(self.created_at),
            "expires_at": moment(self.expires_at),
            "last_used_at": moment(self.last_used_at),
        }


def allows(role: Role, required: Role) -> bool:
    """Whether ``role`` may do what needs ``required``."""
    return ROLES.index(role) >= ROLES.index(required)


def role_of(value: Any, field: str = "role") -> Role:
    if value not in ROLES:
        raise UserError(f"{field} {value!r} is not one of {', '.join(ROLES)}", field)
    return cast(Role, value)


# --- passwords --------------------------------------------------------------------------


def hash_password(password: str, iterations: int = HASH_ITERATIONS) -> str:
    """The stored form of a password: salted PBKDF2, so neither the config file nor
    the database need hold it."""
    salt = os.urandom(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    return f"{HASH_SCHEME}${iterations}${_b64(salt)}${_b64(digest)}"


def verify_password(stored: str, given: str) -> bool:
    """Whether ``given`` matches a plain or hashed entry, in time independent of where
    they differ."""
    if not stored.startswith(HASH_SCHEME + "$"):
        return hmac.compare_digest(_sha256(stored), _sha256(given))
    iterations, salt, expected = parse_hash(stored)
    actual = hashlib.pbkdf2_hmac("sha256", given.encode(), salt, iterations, len(expected))
    return hmac.compare_digest(actual, expected)


def parse_hash(stored: str) -> tuple[int, bytes, bytes]:
    """Iterations, salt and digest of a hash; ValueError when it is not one of ours."""
    problem = ValueError(f"not a {HASH_SCHEME}$<iterations>$<salt>$<hash> string")
    try:
        scheme, rounds, salt, digest = stored.split("$")
        iterations = int(rounds)
        parsed = iterations, _unb64(salt), _unb64(digest)
    except (ValueError, binascii.Error) as exc:
        raise problem from exc
    if scheme != HASH_SCHEME or iterations < 1 or not parsed[2]:
        raise problem
    return parsed


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


def _sha256(text: str) -> bytes:
    """A fixed-length stand-in, because compare_digest reveals a difference in length."""
    return hashlib.sha256(text.encode()).digest()


def expiry(days: float | None) -> timedelta | None:
    """A token's lifetime from a number of days; None is forever."""
    if days is None:
        return None
    if isinstance(days, bool) or not isinstance(days, int | float) or not 0 < days <= 36_500:
        raise UserError(
            f"expires_days {days!r} is not a number of days from 0 to 36500", "expires_days"
        )
    return timedelta(days=days)


def token_digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


# --- config entries ---------------------------------------------------------------------


def parse_config_users(entries: Sequence[str]) -> dict[str, tuple[Role, str]]:
    """``name:password`` (an admin) or ``name:role:password`` entries, by name.

    A bad entry stops the server at start-up rather than locking a user out silently.
    """
    users: dict[str, tuple[Role, str]] = {}
    for entry in entries:
        name, _, stored = entry.partition(":")
        role: Role = CONFIG_ROLE
        maybe_role, colon, rest = stored.partition(":")
        if colon and maybe_role in ROLES:
            role, stored = cast(Role, maybe_role), rest
        if not name or not stored:
            raise ConfigError("http_users entries must be 'name:password' or 'name:role:password'")
        if stored.startswith(HASH_SCHEME + "$"):
            try:
                parse_hash(stored)
            except ValueError as exc:
                raise ConfigError(f"http_users: the hash of {name!r} is {exc}") from exc
        users[name] = (role, stored)
    return users


# --- the table --------------------------------------------------------------------------


def _check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise UserError(
            f"name {name!r} is not 1 to 64 letters, digits and . _ @ -, "
            "starting with a letter or digit",
            "name",
        )
    return name


def _check_password(password: Any) -> str:
    if not isinstance(password, str) or len(password) < MIN_PASSWORD_LENGTH:
        raise UserError(f"password must be at least {MIN_PASSWORD_LENGTH} characters", "password")
    return password


def _user(row: Any) -> User:
    return User(row.name, role_of(row.role), bool(row.disabled), "database", aware(row.created_at))


def _token(row: Any) -> Token:
    def moment(value: datetime | None) -> datetime | None:
        return aware(value) if value is not None else None

    created = aware(row.created_at)
    return Token(
        row.id, row.user_name, row.label, created, moment(row.expires_at), moment(row.last_used_at)
    )


class Users:
    """The user and token tables, with the config file's users in front of them."""

    def __init__(self, database: Database | None, entries: Sequence[str] = ()) -> None:
        """Without a database, the users are the config file's only, read-only."""
        self.database = database
        self._configured = parse_config_users(entries)
        self._secret = secrets.token_bytes(32)
        self._accepted: dict[str, bytes] = {}
        self._decoy: str | None = None
        self._lock = threading.Lock()

    # users

    def exist(self) -> bool:
        """Whether anyone at all could log in."""
        return bool(self._configured) or bool(self._rows(limit=1))

    def all(self) -> list[User]:
        stored = {user.name: user for user in map(_user, self._rows())}
        configured = {name: self._config_user(name) for name in self._configured}
        return [configured.get(name) or stored[name] for name in sorted(stored | configured)]

    def get(self, name: str) -> User:
        if name in self._configured:
            return self._config_user(name)
        row = self._row(name)
        if row is None:
            raise UserNotFound(f"no user {name!r}")
        return _user(row)

    def add(self, name: str, password: str, role: str) -> User:
        _check_name(name)
        values = {
            "name": name,
            "password_hash": hash_password(_check_password(password)),
            "role": role_of(role),
            "disabled": False,
            "created_at": now(),
        }
        if name in self._configured:
            raise UserConflict(f"{name!r} is an http_users entry of the config file", "name")
        with self._writer().begin() as connection:
            if self._row(name, connection) is not None:
                raise UserConflict(f"user {name!r} exists", "name")
            connection.execute(sa.insert(http_user), values)
        return self.get(name)

    def change(
        self,
        name: str,
        *,
        role: str | None = None,
        password: str | None = None,
        disabled: bool | None = None,
    ) -> User:
        """Change what is given. Disabling a user stops their tokens too; the tokens are
        kept, for when the account comes back."""
        values: dict[str, Any] = {}
        if role is not None:
            values["role"] = role_of(role)
        if password is not None:
            values["password_hash"] = hash_password(_check_password(password))
        if disabled is not None:
            values["disabled"] = disabled
        self._refuse_config(name)
        if values:
            with self._writer().begin() as connection:
                query = sa.update(http_user).where(http_user.c.name == name).values(**values)
                if not connection.execute(query).rowcount:
                    raise UserNotFound(f"no user {name!r}")
        return self.get(name)

    def delete(self, name: str) -> None:
        """Delete a user and their tokens."""
        self._refuse_config(name)
        with self._writer().begin() as connection:
            connection.execute(sa.delete(api_token).where(api_token.c.user_name == name))
            deleted = connection.execute(sa.delete(http_user).where(http_user.c.name == name))
            if not deleted.rowcount:
                raise UserNotFound(f"no user {name!r}")

    def check_password(self, name: str, password: str) -> User:
        """The user these credentials are, or LoginRefused.

        An unknown name is checked against a decoy hash, so that the answer takes as
        long as for a known name and does not reveal which names exist. A password that
        passed once is remembered, keyed by the stored hash it matched, so later
        requests skip PBKDF2 and a changed password is checked afresh.
        """
        user, stored = self._credentials(name)
        if stored is None:
            verify_password(self._decoy_hash(), password)
            raise LoginRefused("unknown user")
        digest = hmac.new(self._secret, f"{stored}\0{password}".encode(), "sha256").digest()
        if not hmac.compare_digest(self._accepted.get(name, b""), digest):
            if not verify_password(stored, password):
                raise LoginRefused("wrong password")
            self._accepted[name] = digest
        if user.disabled:
            raise LoginRefused("disabled user")
        return user

    # tokens

    def create_token(
        self, name: str, label: str = "", expires_in: timedelta | None = None
    ) -> tuple[Token, str]:
        """A new token of a database user, and its secret, which is not kept."""
        if name in self._configured:
            raise UserConflict(
                f"{name!r} is an http_users entry of the config file; "
                "tokens belong to users of the database (pacsnode user add)",
                "user",
            )
        secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
        created = now()
        values = {
            "user_name": name,
            "token_hash": token_digest(secret),
            "label": label,
            "created_at": created,
            "expires_at": created + expires_in if expires_in is not None else None,
        }
        with self._writer().begin() as connection:
            if self._row(name, connection) is None:
                raise UserNotFound(f"no user {name!r}")
            result = connection.execute(sa.insert(api_token).returning(api_token.c.id), values)
            pk = result.scalar_one()
        return self.token(pk), secret

    def token(self, pk: int) -> Token:
        with self._reader().connect() as connection:
            row = connection.execute(sa.select(api_token).where(api_token.c.id == pk)).first()
        if row is None:
            raise UserNotFound(f"no token {pk}")
        return _token(row)

    def tokens(self, name: str | None = None) -> list[Token]:
        """Tokens of one user, or of everyone."""
        query = sa.select(api_token).order_by(api_token.c.id)
        if name is not None:
            query = query.where(api_token.c.user_name == name)
        with self._reader().connect() as connection:
            return [_token(row) for row in connection.execute(query)]

    def revoke(self, pk: int, name: str | None = None) -> None:
        """Delete a token; with ``name``, only if it is theirs."""
        condition = api_token.c.id == pk
        if name is not None:
            condition &= api_token.c.user_name == name
        with self._writer().begin() as connection:
            if not connection.execute(sa.delete(api_token).where(condition)).rowcount:
                raise UserNotFound(f"no token {pk}")

    def check_token(self, secret: str) -> tuple[User, Token]:
        """The user a token speaks for, or LoginRefused."""
        if self.database is None:
            raise LoginRefused("unknown token (no database of tokens)")
        query = (
            sa.select(
                api_token,
                http_user.c.role,
                http_user.c.disabled,
                http_user.c.created_at.label("user_created_at"),
            )
            .join(http_user, http_user.c.name == api_token.c.user_name)
            .where(api_token.c.token_hash == token_digest(secret))
        )
        with self._reader().connect() as connection:
            row = connection.execute(query).first()
        if row is None:
            raise LoginRefused("unknown token")
        token = _token(row)
        moment = now()
        if token.expires_at is not None and token.expires_at <= moment:
            raise LoginRefused(f"token {token.id} expired")
        user = User(
            token.user,
            role_of(row.role),
            bool(row.disabled),
            "database",
            aware(row.user_created_at),
        )
        if user.disabled:
            raise LoginRefused(f"token {token.id} of disabled user")
        if token.last_used_at is None or moment - token.last_used_at >= LAST_USED_RESOLUTION:
            with self._writer().begin() as connection:
                connection.execute(
                    sa.update(api_token)
                    .where(api_token.c.id == token.id)
                    .values(last_used_at=moment)
                )
        return user, token

    # helpers

    def _config_user(self, name: str) -> User:
        return User(name, self._configured[name][0], source="config")

    def _credentials(self, name: str) -> tuple[User, str | None]:
        if name in self._configured:
            return self._config_user(name), self._configured[name][1]
        row = self._row(name) if self.database is not None and _NAME.fullmatch(name) else None
        if row is None:
            return User(name, ROLES[0]), None
        return _user(row), row.password_hash

    def _decoy_hash(self) -> str:
        """A hash to spend an unknown name's time on; made when first needed, so that
        commands that never check a password do not pay for it."""
        with self._lock:
            if self._decoy is None:
                hashed = [s for _, s in self._configured.values() if s.startswith(HASH_SCHEME)]
                self._decoy = hashed[0] if hashed else hash_password(secrets.token_hex(16))
            return self._decoy

    def _refuse_config(self, name: str) -> None:
        if name in self._configured:
            raise UserConflict(
                f"{name!r} is an http_users entry of the config file: change it there", "name"
            )

    def _row(self, name: str, connection: sa.Connection | None = None) -> Any:
        query = sa.select(http_user).where(http_user.c.name == name)
        if connection is not None:
            return connection.execute(query).first()
        with self._reader().connect() as reading:
            return reading.execute(query).first()

    def _rows(self, limit: int | None = None) -> list[Any]:
        if self.database is None:
            return []
        with self.database.reader.connect() as connection:
            return list(
                connection.execute(sa.select(http_user).order_by(http_user.c.name).limit(limit))
            )

    def _reader(self) -> sa.Engine:
        return self._database().reader

    def _writer(self) -> sa.Engine:
        return self._database().writer

    def _database(self) -> Database:
        if self.database is None:
            raise UserError("these users are the config file's only, without a database")
        return self.database

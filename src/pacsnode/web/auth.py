"""Who is calling the HTTP door: HTTP Basic users, or OAuth2 bearer tokens (JWTs).

Both are Starlette authentication backends, so handlers, role checks and the audit
trail find the caller in ``request.user`` and the token's scopes in
``request.auth.scopes``. Every request must authenticate except CORS preflights,
which browsers send without credentials by design.

OAuth2 is what syngo.share's webdicom asks of its clients: an access token obtained
from the configured issuer with the client-credentials flow, checked here against the
issuer's published keys (JWKS), so the archive never sees a client secret.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import http.client
import json
import logging
import os
import secrets
import threading
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlparse

import jwt
from starlette.authentication import (
    AuthCredentials,
    AuthenticationBackend,
    AuthenticationError,
    BaseUser,
    SimpleUser,
)
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import HTTPConnection
from starlette.responses import PlainTextResponse, Response

from pacsnode.config import ConfigError, Settings

log = logging.getLogger("pacsnode.http.auth")

REALM = "pacsnode"
HASH_SCHEME = "pbkdf2_sha256"
HASH_ITERATIONS = 600_000
"""OWASP's 2023 figure for PBKDF2-HMAC-SHA256: slow enough to make a stolen config
file expensive to crack, fast enough (a fraction of a second) to check once per user."""
TOKEN_ALGORITHMS = (
    *("RS256", "RS384", "RS512", "PS256", "PS384", "PS512"),
    *("ES256", "ES384", "ES512", "EdDSA"),
)
"""Public-key algorithms only: "none" proves nothing, and an HMAC "signed" with the
issuer's public key is the classic key-confusion forgery."""
CLOCK_LEEWAY = 30.0
"""Seconds of clock difference between issuer and archive tolerated on exp and nbf."""
KEY_REFRESH_COOLDOWN = 1.0
"""A token with an unknown key id refetches the JWKS (the issuer rotated its keys), but
at most this often, so that forged key ids cannot turn into a flood at the issuer."""
NETWORK_TIMEOUT = 10.0
ISSUER_HEADERS = {"User-Agent": "pacsnode", "Accept": "application/json"}
"""Some issuers' firewalls turn away urllib's default User-Agent."""


def hash_password(password: str, iterations: int = HASH_ITERATIONS) -> str:
    """The ``http_users`` form of a password, so the config file need not hold it."""
    salt = os.urandom(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    return f"{HASH_SCHEME}${iterations}${_b64(salt)}${_b64(digest)}"


def verify_password(stored: str, given: str) -> bool:
    """Whether ``given`` matches a plain or hashed entry, in time independent of where
    they differ."""
    if not stored.startswith(HASH_SCHEME + "$"):
        return hmac.compare_digest(_sha256(stored), _sha256(given))
    iterations, salt, expected = _parse_hash(stored)
    actual = hashlib.pbkdf2_hmac("sha256", given.encode(), salt, iterations, len(expected))
    return hmac.compare_digest(actual, expected)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


def _sha256(text: str) -> bytes:
    """A fixed-length stand-in, because compare_digest reveals a difference in length."""
    return hashlib.sha256(text.encode()).digest()


def _parse_hash(stored: str) -> tuple[int, bytes, bytes]:
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


def authentication(settings: Settings) -> list[Middleware]:
    """The middleware that guards the HTTP door; none when ``http_auth`` is "none"
    (the node then keeps the door on loopback). Install it after CORS, which answers
    preflights itself; the backends let preflights through anyway."""
    backend = _backend(settings)
    if backend is None:
        return []
    return [Middleware(AuthenticationMiddleware, backend=backend, on_error=_refusal)]


def _backend(settings: Settings) -> AuthenticationBackend | None:
    if settings.http_auth == "basic":
        return BasicBackend(settings.http_users)
    if settings.http_auth == "oauth2":
        return BearerBackend(settings)
    return None


class Refused(AuthenticationError):
    """A request turned away, with the status and headers that tell the client why."""

    def __init__(self, status: int, detail: str, headers: dict[str, str]) -> None:
        super().__init__(detail)
        self.status, self.detail, self.headers = status, detail, headers


def _refusal(conn: HTTPConnection, exc: AuthenticationError) -> Response:
    if isinstance(exc, Refused):
        return PlainTextResponse(exc.detail, exc.status, headers=exc.headers)
    return PlainTextResponse(str(exc), 401)


def _is_preflight(conn: HTTPConnection) -> bool:
    """A CORS preflight: the browser asks before sending credentials, never with them."""
    return (
        conn.scope.get("method") == "OPTIONS"
        and "origin" in conn.headers
        and "access-control-request-method" in conn.headers
    )


def _credentials(conn: HTTPConnection, scheme: str) -> str | None:
    """What follows ``scheme`` in the Authorization header, if it uses that scheme."""
    kind, _, value = conn.headers.get("authorization", "").partition(" ")
    if kind.lower() != scheme.lower():
        return None
    return value.strip() or None


def _client(conn: HTTPConnection) -> str:
    return conn.client.host if conn.client else "an unknown address"


def _parse_users(entries: Sequence[str]) -> dict[str, str]:
    """``name:password`` entries by name; a bad entry stops the server at start-up
    rather than locking a user out silently."""
    users: dict[str, str] = {}
    for entry in entries:
        name, _, stored = entry.partition(":")
        if not name or not stored:
            raise ConfigError("http_users entries must be 'name:password'")
        if stored.startswith(HASH_SCHEME + "$"):
            try:
                _parse_hash(stored)
            except ValueError as exc:
                raise ConfigError(f"http_users: the hash of {name!r} is {exc}") from exc
        users[name] = stored
    if not users:
        raise ConfigError('http_auth = "basic" needs at least one http_users entry')
    return users


class BasicBackend(AuthenticationBackend):
    """HTTP Basic (RFC 7617) against ``http_users``.

    A hashed entry costs a PBKDF2 run, done on a worker thread; a name and password
    that passed once are remembered (as a keyed digest) so later requests skip it.
    """

    def __init__(self, entries: Sequence[str]) -> None:
        self._users = _parse_users(entries)
        hashed = [stored for stored in self._users.values() if stored.startswith(HASH_SCHEME)]
        self._decoy = (hashed or list(self._users.values()))[0]
        self._secret = secrets.token_bytes(32)
        self._accepted: dict[str, bytes] = {}

    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, BaseUser] | None:
        if _is_preflight(conn):
            return None
        name, password = self._decode(conn)
        if not await self._check(name, password):
            reason = "wrong password" if name in self._users else "unknown user"
            log.warning("HTTP Basic: %s %r from %s", reason, name, _client(conn))
            raise _basic_challenge("wrong user name or password")
        return AuthCredentials(["authenticated"]), SimpleUser(name)

    def _decode(self, conn: HTTPConnection) -> tuple[str, str]:
        encoded = _credentials(conn, "Basic")
        if encoded is None:
            log.info("HTTP Basic: no credentials from %s for %s", _client(conn), conn.url.path)
            raise _basic_challenge("authentication required")
        try:
            name, colon, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            colon = ""
        if not colon:
            log.warning("HTTP Basic: malformed credentials from %s", _client(conn))
            raise _basic_challenge("malformed credentials")
        return name, password

    async def _check(self, name: str, password: str) -> bool:
        """An unknown name is checked against a hashed entry, so that the answer takes
        as long as for a known name (with a hashed password) and does not reveal names."""
        digest = hmac.new(self._secret, f"{name}:{password}".encode(), "sha256").digest()
        if hmac.compare_digest(self._accepted.get(name, b""), digest):
            return True
        stored = self._users.get(name)
        matches = await run_in_threadpool(verify_password, stored or self._decoy, password)
        if matches and stored is not None:
            self._accepted[name] = digest
            return True
        return False


def _basic_challenge(detail: str) -> Refused:
    return Refused(401, detail, {"WWW-Authenticate": f'Basic realm="{REALM}", charset="UTF-8"'})


class TokenUser(SimpleUser):
    """A caller known by an access token: its subject, and every claim for role checks
    and the audit trail."""

    def __init__(self, name: str, claims: dict[str, Any]) -> None:
        super().__init__(name)
        self.claims = claims


class KeysUnavailable(Exception):
    """The issuer's keys cannot be read: the archive, not the token, is at fault."""


class BearerBackend(AuthenticationBackend):
    """OAuth2 bearer tokens (RFC 6750): JWTs signed by the configured issuer."""

    def __init__(self, settings: Settings) -> None:
        for name in ("oauth2_issuer", "oauth2_jwks_url"):
            url = getattr(settings, name)
            if url and urlparse(url).scheme not in ("http", "https"):
                raise ConfigError(f"{name} must be an http or https URL")
        if not settings.oauth2_issuer:
            raise ConfigError('http_auth = "oauth2" needs oauth2_issuer')
        self._issuer = settings.oauth2_issuer
        self._audience = settings.oauth2_audience or None
        self._keys = SigningKeys(settings.oauth2_issuer, settings.oauth2_jwks_url)

    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, BaseUser] | None:
        if _is_preflight(conn):
            return None
        token = _credentials(conn, "Bearer")
        if token is None:
            log.info("OAuth2: no bearer token from %s for %s", _client(conn), conn.url.path)
            raise Refused(401, "bearer token required", {"WWW-Authenticate": _bearer()})
        try:
            claims = await self._verify(token)
        except KeysUnavailable as exc:
            log.error("OAuth2: cannot check the token from %s: %s", _client(conn), exc)
            raise Refused(503, "the token issuer cannot be reached", {"Retry-After": "30"}) from exc
        except jwt.PyJWTError as exc:
            log.warning("OAuth2: rejected token from %s: %s", _client(conn), _printable(exc))
            raise _invalid_token(str(exc)) from exc
        return AuthCredentials(["authenticated", *_scopes(claims)]), TokenUser(
            _subject(claims), claims
        )

    async def _verify(self, token: str) -> dict[str, Any]:
        header = jwt.get_unverified_header(token)
        if header.get("alg") not in TOKEN_ALGORITHMS:
            raise jwt.InvalidAlgorithmError(f"algorithm {header.get('alg')!r} is not accepted")
        if not header.get("kid"):
            raise jwt.InvalidTokenError("the token names no signing key (kid)")
        key = await self._keys.find(header["kid"])
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=TOKEN_ALGORITHMS,
            issuer=self._issuer,
            audience=self._audience,
            leeway=CLOCK_LEEWAY,
            options={"require": ["exp", "iss"], "verify_aud": self._audience is not None},
        )
        if not _subject(claims):
            raise jwt.MissingRequiredClaimError("sub")
        return claims


def _subject(claims: dict[str, Any]) -> str:
    """Who the token speaks for; a client-credentials token names the client."""
    for claim in ("sub", "client_id"):
        if isinstance(claims.get(claim), str) and claims[claim]:
            return str(claims[claim])
    return ""


def _scopes(claims: dict[str, Any]) -> list[str]:
    """OAuth2 scopes: space-separated in ``scope`` (RFC 9068), a list in some issuers' ``scp``."""
    granted = claims.get("scope", claims.get("scp", ""))
    if isinstance(granted, str):
        return granted.split()
    return [str(scope) for scope in granted] if isinstance(granted, list) else []


def _bearer(error: str = "", description: str = "") -> str:
    challenge = f'Bearer realm="{REALM}"'
    if error:
        # RFC 6750 §3: the description may not contain quotes or backslashes.
        text = _printable(description).replace('"', "'").replace("\\", "")
        challenge += f', error="{error}", error_description="{text}"'
    return challenge


def _printable(text: object) -> str:
    """Text with what a token's author chose (a kid, say) unable to forge log lines."""
    return "".join(c for c in str(text) if c.isprintable())


def _invalid_token(description: str) -> Refused:
    return Refused(
        401, "invalid token", {"WWW-Authenticate": _bearer("invalid_token", description)}
    )


class SigningKeys:
    """The issuer's public keys, fetched on worker threads of their own and cached.

    PyJWKClient caches the key set for five minutes and refetches it when a token
    names a key it does not know, which is how a rotated key arrives without a
    restart. Its fetches block, so they must stay off the event loop, and a slow
    issuer must not hold up the threads that serve other requests.
    """

    def __init__(self, issuer: str, jwks_url: str) -> None:
        self._issuer = issuer
        self._jwks_url = jwks_url
        self._client: jwt.PyJWKClient | None = None
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="jwks")

    async def find(self, kid: str) -> jwt.PyJWK:
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._find, kid)

    def _find(self, kid: str) -> jwt.PyJWK:
        client = self._jwks()
        try:
            return client.get_signing_key(kid)
        except (jwt.PyJWKClientConnectionError, jwt.PyJWKSetError) as exc:
            raise KeysUnavailable(f"cannot read keys from {client.uri}: {exc}") from exc

    def _jwks(self) -> jwt.PyJWKClient:
        with self._lock:
            if self._client is None:
                url = self._jwks_url or _discover(self._issuer)
                try:
                    self._client = jwt.PyJWKClient(
                        url,
                        headers=ISSUER_HEADERS,
                        timeout=NETWORK_TIMEOUT,
                        cooldown_duration=KEY_REFRESH_COOLDOWN,
                    )
                except jwt.PyJWKClientError as exc:
                    raise KeysUnavailable(f"jwks_uri {url!r}: {exc}") from exc
            return self._client


def _discover(issuer: str) -> str:
    """The JWKS address from the issuer's OpenID configuration (OIDC Discovery §4)."""
    url = issuer.rstrip("/") + "/.well-known/openid-configuration"
    try:
        request = urllib.request.Request(url, headers=ISSUER_HEADERS)
        with urllib.request.urlopen(request, timeout=NETWORK_TIMEOUT) as response:
            document = json.load(response)
    except (OSError, ValueError, http.client.HTTPException) as exc:
        raise KeysUnavailable(f"cannot read {url}: {exc}") from exc
    jwks_uri = document.get("jwks_uri") if isinstance(document, dict) else None
    if not isinstance(jwks_uri, str) or not jwks_uri:
        raise KeysUnavailable(f"{url} names no jwks_uri")
    return jwks_uri

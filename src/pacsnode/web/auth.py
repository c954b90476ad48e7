"""Who is calling the HTTP door: HTTP Basic users, API tokens, or OAuth2 bearer JWTs.

All are Starlette authentication backends, so handlers, the role check
(:mod:`pacsnode.web.roles`) and the audit trail find the caller, with a role, in
``request.user`` and a JWT's scopes in ``request.auth.scopes``. Every request must
authenticate except CORS preflights, which browsers send without credentials by design.

Users and API tokens are :mod:`pacsnode.archive.users`: the ``http_users`` of the
config file and those of the index database. An API token (``Bearer pnt_…``) is
accepted in both modes. The audit trail gets every failed login and, so as not to
drown in one line per request, a successful one once per user and address every
:data:`LOGIN_AUDIT_INTERVAL` seconds.

OAuth2 is what syngo.share's webdicom asks of its clients: an access token obtained
from the configured issuer with the client-credentials flow, checked here against the
issuer's published keys (JWKS), so the archive never sees a client secret.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import http.client
import json
import logging
import threading
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlparse

import jwt
from starlette.authentication import (
    AuthCredentials,
    AuthenticationBackend,
    AuthenticationError,
    BaseUser,
)
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import HTTPConnection
from starlette.responses import PlainTextResponse, Response

from pacsnode import audit
from pacsnode.archive.users import (
    ROLES,
    TOKEN_PREFIX,
    LoginRefused,
    Role,
    Users,
    hash_password,
    verify_password,
)
from pacsnode.config import ConfigError, Settings
from pacsnode.web.roles import Caller, RoleMiddleware

log = logging.getLogger("pacsnode.http.auth")

__all__ = ["authentication", "hash_password", "verify_password"]

REALM = "pacsnode"
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
LOGIN_AUDIT_INTERVAL = 600.0
"""Seconds during which further successful logins of a user from one address are not
audited again: every request logs in, and the audit trail is for people to read."""


def authentication(
    settings: Settings,
    users: Users | None = None,
    wrap: Callable[[AuthenticationBackend], AuthenticationBackend] | None = None,
) -> list[Middleware]:
    """The middleware that guards the HTTP door; none when ``http_auth`` is "none"
    (the node then keeps the door on loopback). Install it after CORS, which answers
    preflights itself; the backends let preflights through anyway.

    ``users`` are the config file's and the database's; without them, those of
    ``http_users`` alone. ``wrap`` puts a backend in front of the door's (the web UI's
    session cookies).
    """
    if users is None:
        users = Users(None, settings.http_users)
    backend = _backend(settings, users)
    if backend is None:
        return []
    if wrap is not None:
        backend = wrap(backend)
    return [
        Middleware(AuthenticationMiddleware, backend=backend, on_error=_refusal),
        Middleware(RoleMiddleware),
    ]


def _backend(settings: Settings, users: Users) -> AuthenticationBackend | None:
    if settings.http_auth == "basic":
        if not users.exist():
            raise ConfigError(
                'http_auth = "basic" needs at least one http_users entry '
                "or a user made with 'pacsnode user add'"
            )
        return BasicBackend(users)
    if settings.http_auth == "oauth2":
        return BearerBackend(settings, users)
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


def _address(conn: HTTPConnection) -> str:
    return conn.client.host if conn.client else ""


class Logins:
    """Tells the audit trail about logins: every failure, and a success once per user
    and address every :data:`LOGIN_AUDIT_INTERVAL` seconds."""

    def __init__(self) -> None:
        self._audited: dict[tuple[str, str], float] = {}

    def failed(self, conn: HTTPConnection, name: str) -> None:
        """``name`` is the one claimed, or for a token that proves nothing, its kind."""
        audit.user_authentication(audit.Actor(name, _address(conn), requestor=True), False)

    def succeeded(self, conn: HTTPConnection, name: str) -> None:
        key, moment = (name, _address(conn)), time.monotonic()
        last = self._audited.get(key)
        if last is not None and moment - last < LOGIN_AUDIT_INTERVAL:
            return
        if len(self._audited) > 10_000:  # forget the stale ones rather than grow forever
            self._audited = {
                k: t for k, t in self._audited.items() if moment - t < LOGIN_AUDIT_INTERVAL
            }
        self._audited[key] = moment
        audit.user_authentication(audit.Actor(name, key[1], requestor=True), True)


async def _api_token(
    conn: HTTPConnection, users: Users, logins: Logins, secret: str
) -> tuple[AuthCredentials, BaseUser]:
    """The caller an API token stands for; 401 with an RFC 6750 challenge if none."""
    try:
        user, token = await run_in_threadpool(users.check_token, secret)
    except LoginRefused as exc:
        log.warning("API token: %s, from %s", exc, _client(conn))
        logins.failed(conn, "api-token")
        raise _invalid_token("unknown, expired or revoked token") from exc
    logins.succeeded(conn, user.name)
    return AuthCredentials(["authenticated", f"token:{token.id}"]), Caller(user.name, user.role)


class BasicBackend(AuthenticationBackend):
    """HTTP Basic (RFC 7617) against the users, and API tokens as bearer tokens.

    Checking a password costs a PBKDF2 run and a database read, done on a worker
    thread; see :meth:`Users.check_password` for how repeated requests avoid the first.
    """

    def __init__(self, users: Users) -> None:
        self._users = users
        self._logins = Logins()

    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, BaseUser] | None:
        if _is_preflight(conn):
            return None
        token = _credentials(conn, "Bearer")
        if token is not None:
            return await _api_token(conn, self._users, self._logins, token)
        name, password = self._decode(conn)
        try:
            user = await run_in_threadpool(self._users.check_password, name, password)
        except LoginRefused as exc:
            log.warning("HTTP Basic: %s %r from %s", exc, _printable(name), _client(conn))
            self._logins.failed(conn, name)
            raise _basic_challenge("wrong user name or password") from exc
        self._logins.succeeded(conn, user.name)
        return AuthCredentials(["authenticated"]), Caller(user.name, user.role)

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


def _basic_challenge(detail: str) -> Refused:
    return Refused(401, detail, {"WWW-Authenticate": f'Basic realm="{REALM}", charset="UTF-8"'})


class TokenUser(Caller):
    """A caller known by an access token: its subject, its role, and every claim for
    the audit trail."""

    def __init__(self, name: str, role: Role, claims: dict[str, Any]) -> None:
        super().__init__(name, role)
        self.claims = claims


class KeysUnavailable(Exception):
    """The issuer's keys cannot be read: the archive, not the token, is at fault."""


class BearerBackend(AuthenticationBackend):
    """OAuth2 bearer tokens (RFC 6750): JWTs signed by the configured issuer."""

    def __init__(self, settings: Settings, users: Users) -> None:
        for name in ("oauth2_issuer", "oauth2_jwks_url"):
            url = getattr(settings, name)
            if url and urlparse(url).scheme not in ("http", "https"):
                raise ConfigError(f"{name} must be an http or https URL")
        if not settings.oauth2_issuer:
            raise ConfigError('http_auth = "oauth2" needs oauth2_issuer')
        self._issuer = settings.oauth2_issuer
        self._audience = settings.oauth2_audience or None
        self._keys = SigningKeys(settings.oauth2_issuer, settings.oauth2_jwks_url)
        self._roles_claim = settings.oauth2_roles_claim
        self._users = users
        self._logins = Logins()

    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, BaseUser] | None:
        if _is_preflight(conn):
            return None
        token = _credentials(conn, "Bearer")
        if token is None:
            log.info("OAuth2: no bearer token from %s for %s", _client(conn), conn.url.path)
            raise Refused(401, "bearer token required", {"WWW-Authenticate": _bearer()})
        if token.startswith(TOKEN_PREFIX):
            return await _api_token(conn, self._users, self._logins, token)
        try:
            claims = await self._verify(token)
        except KeysUnavailable as exc:
            log.error("OAuth2: cannot check the token from %s: %s", _client(conn), exc)
            raise Refused(503, "the token issuer cannot be reached", {"Retry-After": "30"}) from exc
        except jwt.PyJWTError as exc:
            log.warning("OAuth2: rejected token from %s: %s", _client(conn), _printable(exc))
            self._logins.failed(conn, "oauth2-token")
            raise _invalid_token(str(exc)) from exc
        name = _subject(claims)
        self._logins.succeeded(conn, name)
        role = token_role(claims, self._roles_claim)
        return AuthCredentials(["authenticated", *_scopes(claims)]), TokenUser(name, role, claims)

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


def token_role(claims: dict[str, Any], roles_claim: str) -> Role:
    """The strongest role a token grants: in the roles claim (a list or a space-separated
    string; a dotted name such as ``realm_access.roles`` reaches into an object), as
    ``admin`` or ``pacsnode:admin``, or in its scopes as ``pacsnode:admin``. A valid
    token that grants none is a viewer's."""
    value: Any = claims
    for part in roles_claim.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    granted = set(value.split() if isinstance(value, str) else [])
    granted |= {str(item) for item in value} if isinstance(value, list) else set()
    granted = {item.removeprefix("pacsnode:") for item in granted}
    granted |= {s.removeprefix("pacsnode:") for s in _scopes(claims) if s.startswith("pacsnode:")}
    return next((role for role in reversed(ROLES) if role in granted), ROLES[0])


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

"""The HTTP door's authentication as clients meet it: a real server, real HTTP, real JWTs.

The OAuth2 tests run a small authorization server of their own (OpenID discovery, a
JWKS and a client-credentials token endpoint), as syngo.share's webdicom clients use.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import httpx
import jwt
import pytest
from conftest import RunningServer, ServerFactory, free_port
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from pacsnode.config import ConfigError, Settings
from pacsnode.web.auth import authentication, hash_password, verify_password

AUDIENCE = "pacsnode-dicomweb"
CLIENTS = {"viewer": "viewer-secret"}
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


class Issuer:
    """An OAuth2 authorization server in a thread: just enough of Keycloak or Entra ID."""

    def __init__(self) -> None:
        self.keys: dict[str, PrivateKey] = {}
        self.signing_kid = ""
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self._http.server_address[1]}/realms/test"
        serve = threading.Thread(target=self._http.serve_forever, args=(0.05,), daemon=True)
        serve.start()

    def close(self) -> None:
        self._http.shutdown()
        self._http.server_close()

    def add_key(self, kid: str, key: PrivateKey | None = None) -> PrivateKey:
        """Publish a key in the JWKS and sign new tokens with it."""
        self.keys[kid] = key or rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.signing_kid = kid
        return self.keys[kid]

    def mint(self, kid: str = "", **claims: Any) -> str:
        kid = kid or self.signing_kid
        now = int(time.time())
        payload = {"iss": self.url, "sub": "viewer", "aud": AUDIENCE, "iat": now}
        payload |= {"exp": now + 300, **claims}
        key = self.keys[kid]
        return jwt.encode(payload, key, algorithm=_algorithm(key), headers={"kid": kid})

    def jwks(self) -> dict[str, Any]:
        return {"keys": [_public_jwk(kid, key) for kid, key in self.keys.items()]}

    def token_response(
        self, form: dict[str, str], authorization: str
    ) -> tuple[int, dict[str, Any]]:
        """RFC 6749 §4.4: client credentials, the client authenticated by HTTP Basic."""
        client, _, secret = (
            base64.b64decode(authorization.removeprefix("Basic ")).decode().partition(":")
        )
        if not hmac.compare_digest(CLIENTS.get(client, "\0"), secret):
            return 401, {"error": "invalid_client"}
        if form.get("grant_type") != "client_credentials":
            return 400, {"error": "unsupported_grant_type"}
        token = self.mint(sub=client, client_id=client, scope="dicomweb.read")
        return 200, {"access_token": token, "token_type": "Bearer", "expires_in": 300}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.endswith("/.well-known/openid-configuration"):
                    self._json(200, _discovery(issuer.url))
                elif self.path.endswith("/certs"):
                    self._json(200, issuer.jwks())
                else:
                    self._json(404, {})

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"])).decode()
                form = {k: v[0] for k, v in parse_qs(body).items()}
                self._json(*issuer.token_response(form, self.headers.get("Authorization", "")))

            def _json(self, status: int, document: dict[str, Any]) -> None:
                data = json.dumps(document).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                """Quiet: pytest shows what matters."""

        return Handler


def _discovery(url: str) -> dict[str, Any]:
    endpoints = {"jwks_uri": f"{url}/certs", "token_endpoint": f"{url}/token"}
    return {"issuer": url, **endpoints, "grant_types_supported": ["client_credentials"]}


def _algorithm(key: PrivateKey) -> str:
    return "RS256" if isinstance(key, rsa.RSAPrivateKey) else "ES256"


def _public_jwk(kid: str, key: PrivateKey) -> dict[str, Any]:
    if isinstance(key, rsa.RSAPrivateKey):
        jwk = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    else:
        jwk = ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
    return jwk | {"kid": kid, "use": "sig", "alg": _algorithm(key)}


def _forged(header: dict[str, Any], claims: dict[str, Any], sign: Any) -> str:
    """A compact JWT assembled by hand, for what PyJWT refuses to produce."""
    parts = [_b64url(json.dumps(part).encode()) for part in (header, claims)]
    signing_input = ".".join(parts).encode()
    return ".".join([*parts, _b64url(sign(signing_input))])


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest.fixture
def issuer() -> Iterator[Issuer]:
    running = Issuer()
    running.add_key("key-1")
    yield running
    running.close()


def _oauth2_server(server_factory: ServerFactory, issuer: Issuer, **settings: Any) -> RunningServer:
    return server_factory(
        http_auth="oauth2", oauth2_issuer=issuer.url, oauth2_audience=AUDIENCE, **settings
    )


def _get(server: RunningServer, token: str = "", **headers: str) -> httpx.Response:
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return httpx.get(f"{server.url}/api/jobs", headers=headers)


# --- HTTP Basic -------------------------------------------------------------------------


def test_basic_auth_lets_in_configured_users_only(server_factory: ServerFactory) -> None:
    users = f"alice:secret,bob:{hash_password('correct horse')}"  # as in PACSNODE_HTTP_USERS
    server = server_factory(http_auth="basic", http_users=users)
    url = f"{server.url}/api/jobs"

    missing = httpx.get(url)
    assert missing.status_code == 401
    assert missing.headers["WWW-Authenticate"].startswith('Basic realm="pacsnode"')
    for name, password in [("alice", "Secret"), ("bob", "secret"), ("carol", "secret")]:
        refused = httpx.get(url, auth=(name, password))
        assert refused.status_code == 401, name
        assert refused.headers["WWW-Authenticate"].startswith("Basic ")
    assert httpx.get(url, auth=("alice", "secret")).status_code == 200
    for _ in range(2):  # the second time from the cache of passwords already checked
        assert httpx.get(url, auth=("bob", "correct horse")).status_code == 200
    assert httpx.get(url, auth=("bob", "correct horsE")).status_code == 401

    assert "wrong password 'alice' from 127.0.0.1" in server.log()
    assert "unknown user 'carol'" in server.log()
    assert "Secret" not in server.log() and "correct hors" not in server.log()


def test_browser_viewer_gets_cors_answers_without_credentials(
    server_factory: ServerFactory,
) -> None:
    viewer = "https://viewer.example"
    server = server_factory(http_auth="basic", http_users="alice:secret", cors_origins=viewer)
    url = f"{server.url}/dicom-web/studies"

    preflight = httpx.options(
        url, headers={"Origin": viewer, "Access-Control-Request-Method": "GET"}
    )
    assert preflight.status_code == 200
    assert preflight.headers["Access-Control-Allow-Origin"] == viewer
    # The 401 carries CORS headers too, or the viewer's script could not see it.
    refused = httpx.get(url, headers={"Origin": viewer})
    assert refused.status_code == 401
    assert refused.headers["Access-Control-Allow-Origin"] == viewer
    assert httpx.options(url).status_code == 401  # not a preflight: no free pass


def test_basic_auth_refuses_to_start_without_users() -> None:
    with pytest.raises(ConfigError, match="http_users"):
        authentication(Settings(http_auth="basic"))
    with pytest.raises(ConfigError, match="hash of 'bob'"):
        authentication(Settings(http_auth="basic", http_users=("bob:pbkdf2_sha256$x$y$z",)))


def test_passwords_verify_plain_and_hashed() -> None:
    hashed = hash_password("pässword")
    assert hashed.startswith("pbkdf2_sha256$600000$")
    assert hashed != hash_password("pässword")  # salted
    assert verify_password(hashed, "pässword")
    assert not verify_password(hashed, "password")
    assert verify_password("plain", "plain")
    assert not verify_password("plain", "plain ")


def test_hash_password_command_prints_a_hash_that_verifies() -> None:
    command = [sys.executable, "-m", "pacsnode", "hash-password"]
    done = subprocess.run(
        command, input="s3cret: with spaces\n", capture_output=True, text=True, check=True
    )
    hashed = done.stdout.strip()
    assert verify_password(hashed, "s3cret: with spaces")
    assert not verify_password(hashed, "s3cret: with spaces\n")


# --- no authentication: loopback only ---------------------------------------------------


def _lan_address() -> str | None:
    """This machine's address on its network, if it has one (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("10.254.254.254", 9))
        except OSError:
            return None
        address = str(probe.getsockname()[0])
    return None if address.startswith("127.") else address


def test_without_auth_http_stays_on_loopback(server_factory: ServerFactory) -> None:
    server = server_factory(http_auth="none", http_bind_address="0.0.0.0")

    assert "listens on 127.0.0.1 only, not on 0.0.0.0" in server.log()
    assert f"HTTP server listening on 127.0.0.1:{server.http_port}" in server.log()
    assert httpx.get(f"{server.url}/api/jobs").status_code == 200
    lan = _lan_address()
    if lan is not None:  # a machine with only loopback has nothing more to show
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://{lan}:{server.http_port}/api/jobs")


# --- OAuth2 bearer tokens ---------------------------------------------------------------


def test_client_credentials_token_opens_the_door(
    server_factory: ServerFactory, issuer: Issuer
) -> None:
    issuer.add_key("ec-1", ec.generate_private_key(ec.SECP256R1()))  # signs from now on
    server = _oauth2_server(server_factory, issuer)  # JWKS found by OpenID discovery

    missing = _get(server)
    assert missing.status_code == 401
    assert missing.headers["WWW-Authenticate"] == 'Bearer realm="pacsnode"'

    discovery = httpx.get(f"{issuer.url}/.well-known/openid-configuration").json()
    grant = httpx.post(
        discovery["token_endpoint"],
        data={"grant_type": "client_credentials"},
        auth=("viewer", CLIENTS["viewer"]),
    )
    assert grant.status_code == 200, grant.text
    assert _get(server, grant.json()["access_token"]).status_code == 200
    assert _get(server, issuer.mint(kid="key-1")).status_code == 200  # RS256 as well as ES256


def test_invalid_tokens_are_refused(server_factory: ServerFactory, issuer: Issuer) -> None:
    server = _oauth2_server(server_factory, issuer, oauth2_jwks_url=f"{issuer.url}/certs")
    now = int(time.time())
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = (
        issuer.keys["key-1"]
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    claims = {"iss": issuer.url, "sub": "viewer", "aud": AUDIENCE, "exp": now + 300}
    tokens = {
        "expired": issuer.mint(exp=now - 120, iat=now - 420),
        "not yet valid": issuer.mint(nbf=now + 600),
        "wrong issuer": issuer.mint(iss="https://elsewhere.example/realms/test"),
        "wrong audience": issuer.mint(aud="another-service"),
        "no expiry": jwt.encode(
            {k: v for k, v in claims.items() if k != "exp"},
            issuer.keys["key-1"],
            algorithm="RS256",
            headers={"kid": "key-1"},
        ),
        "bad signature": jwt.encode(claims, stranger, algorithm="RS256", headers={"kid": "key-1"}),
        "alg none": _forged({"alg": "none", "kid": "key-1"}, claims, lambda data: b""),
        "HS256 with the public key": _forged(
            {"alg": "HS256", "kid": "key-1"},
            claims,
            lambda data: hmac.new(public_pem, data, hashlib.sha256).digest(),
        ),
        "unknown key": jwt.encode(claims, stranger, algorithm="RS256", headers={"kid": "other"}),
        "garbage": "not.a.jwt",
    }
    answers = {name: _get(server, token) for name, token in tokens.items()}

    assert {name: a.status_code for name, a in answers.items()} == dict.fromkeys(tokens, 401)
    for name, answer in answers.items():
        assert 'error="invalid_token"' in answer.headers["WWW-Authenticate"], name
    assert _get(server, issuer.mint()).status_code == 200
    for token in tokens.values():
        assert token not in server.log()


def test_rotated_signing_key_is_picked_up_without_restart(
    server_factory: ServerFactory, issuer: Issuer
) -> None:
    server = _oauth2_server(server_factory, issuer)
    old = issuer.mint()
    assert _get(server, old).status_code == 200

    del issuer.keys["key-1"]
    issuer.add_key("key-2")
    new = issuer.mint()
    # An unknown key id refetches the JWKS, at most once a second: retry until it has.
    deadline = time.monotonic() + 10
    while _get(server, new).status_code != 200:
        assert time.monotonic() < deadline, "the new key was never fetched"
        time.sleep(0.2)
    assert _get(server, old).status_code == 401


def test_unreachable_issuer_gives_503_and_says_why(server_factory: ServerFactory) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}/realms/gone"
    server = server_factory(http_auth="oauth2", oauth2_issuer=nowhere)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    claims = {"iss": nowhere, "sub": "viewer", "exp": int(time.time()) + 300}
    token = jwt.encode(claims, key, algorithm="RS256", headers={"kid": "key-1"})

    answer = _get(server, token)
    assert answer.status_code == 503
    assert "Retry-After" in answer.headers
    assert f"cannot read {nowhere}/.well-known/openid-configuration" in server.log()
    assert _get(server).status_code == 401  # no token: refused without asking the issuer


# --- who the caller is, for roles and audit ---------------------------------------------


async def _whoami(request: Request) -> JSONResponse:
    return JSONResponse({"name": request.user.display_name, "scopes": request.auth.scopes})


def _ask(settings: Settings, method: str = "GET", **request: Any) -> httpx.Response:
    """Call an app guarded by ``authentication(settings)`` that says whom it takes the
    caller for: request.user is what roles and the audit trail will use."""
    app = Starlette(routes=[Route("/", _whoami)], middleware=authentication(settings))

    async def ask() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://pacsnode") as client:
            return await client.request(method, "/", **request)

    return asyncio.run(ask())


def test_request_user_names_the_caller(issuer: Issuer) -> None:
    basic = Settings(http_auth="basic", http_users=("alice:secret",))
    assert _ask(basic, auth=("alice", "secret")).json()["name"] == "alice"

    oauth2 = Settings(http_auth="oauth2", oauth2_issuer=issuer.url, oauth2_audience=AUDIENCE)
    token = issuer.mint(sub="svc-viewer", scope="dicomweb.read dicomweb.write")
    assert _ask(oauth2, headers={"Authorization": f"Bearer {token}"}).json() == {
        "name": "svc-viewer",
        "scopes": ["authenticated", "dicomweb.read", "dicomweb.write"],
    }


def test_preflight_passes_authentication_placed_before_cors() -> None:
    """Without CORS in front, a preflight still gets past authentication to routing."""
    basic = Settings(http_auth="basic", http_users=("alice:secret",))
    preflight = {"Origin": "https://viewer.example", "Access-Control-Request-Method": "GET"}
    assert _ask(basic, "OPTIONS", headers=preflight).status_code == 405

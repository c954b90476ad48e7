"""Users, roles and API tokens at the HTTP door: a real server, real HTTP, the real index."""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import sqlalchemy as sa
from conftest import RunningServer, ServerFactory, ct_dataset
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from test_http_auth import AUDIENCE, Issuer
from test_stow import dicom_parts, multipart, part10, post

from pacsnode import audit
from pacsnode.archive.database import migrate, open_database
from pacsnode.archive.schema import api_token, http_user
from pacsnode.archive.users import LoginRefused, UserConflict, UserError, Users
from pacsnode.config import Settings
from pacsnode.web.auth import authentication, token_role
from pacsnode.web.roles import required_role

ROOT = ("root", "root-password")
"""The administrator of the config file, as an installation starts with one."""
Credentials = tuple[str, str] | str


def _headers(who: Credentials) -> dict[str, str]:
    """Basic credentials for a (name, password) pair, a bearer header for a token."""
    if isinstance(who, str):
        return {"Authorization": f"Bearer {who}"}
    return {"Authorization": "Basic " + base64.b64encode(":".join(who).encode()).decode()}


def _call(server: RunningServer, method: str, path: str, who: Credentials, **kw: object) -> int:
    answer = httpx.request(method, f"{server.url}{path}", headers=_headers(who), **kw)  # type: ignore[arg-type]
    return answer.status_code


def _stow(server: RunningServer, who: Credentials) -> int:
    return post(server, multipart(dicom_parts(part10(ct_dataset()))), **_headers(who)).status_code


def _basic_server(server_factory: ServerFactory, **settings: object) -> RunningServer:
    return server_factory(http_auth="basic", http_users=":".join(ROOT), **settings)


def _add(server: RunningServer, name: str, role: str) -> tuple[str, str]:
    password = f"{name}-password"
    answer = httpx.post(
        f"{server.url}/api/users",
        json={"name": name, "password": password, "role": role},
        auth=ROOT,
    )
    assert answer.status_code == 201, answer.text
    return name, password


def _pacsnode(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "pacsnode", *args]
    return subprocess.run(command, input=stdin, capture_output=True, text=True, timeout=120)


def _stored_user(server: RunningServer, name: str) -> sa.Row[tuple[object, ...]] | None:
    archive = server.archive()
    try:
        with archive.database.reader.connect() as connection:
            return connection.execute(sa.select(http_user).where(http_user.c.name == name)).first()
    finally:
        archive.close()


# --- the policy -------------------------------------------------------------------------


def test_required_role_table() -> None:
    assert required_role("GET", "/dicom-web/studies") == "viewer"
    assert required_role("HEAD", "/wado") == "viewer"
    assert required_role("POST", "/dicom-web/studies") == "operator"
    assert required_role("POST", "/dicom-web/studies/1.2.3") == "operator"
    assert required_role("POST", "/api/jobs/7/retry") == "operator"
    assert required_role("POST", "/api/remote/ORTHANC/retrieve") == "operator"
    assert required_role("DELETE", "/api/worklist/3") == "operator"
    assert required_role("POST", "/api/rejected/1.2.3/restore") == "operator"
    assert required_role("POST", "/api/rejected/purge") == "admin"
    assert required_role("PUT", "/api/remote/ORTHANC") == "admin"
    assert required_role("GET", "/api/remote/ORTHANC") == "viewer"
    assert required_role("POST", "/api/routes") == "admin"
    assert required_role("GET", "/api/users") == "admin"
    assert required_role("GET", "/api/audit") == "admin"
    assert required_role("POST", "/api/tokens") == "viewer"
    assert required_role("DELETE", "/api/tokens/4") == "viewer"
    assert required_role("POST", "/api/something-new") == "admin"  # unknown: safe default
    assert required_role("DELETE", "/dicom-web/studies/1.2.3") == "admin"
    assert required_role("POST", "/api/media") == "viewer"  # a ZIP download
    assert required_role("POST", "/api/print") == "operator"
    assert required_role("GET", "/api/printers") == "viewer"


def test_token_role_from_claims() -> None:
    assert token_role({}, "roles") == "viewer"
    assert token_role({"roles": ["viewer", "operator"]}, "roles") == "operator"
    assert token_role({"roles": "pacsnode:admin"}, "roles") == "admin"
    assert token_role({"scope": "openid pacsnode:operator"}, "roles") == "operator"
    assert token_role({"scope": "admin"}, "roles") == "viewer"  # a bare scope is not ours
    keycloak = {"realm_access": {"roles": ["offline_access", "admin"]}}
    assert token_role(keycloak, "realm_access.roles") == "admin"
    assert token_role(keycloak, "roles") == "viewer"


async def _ok(request: Request) -> JSONResponse:
    return JSONResponse({})


def test_logins_and_refusals_reach_the_audit_trail(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every failed login, a successful one once per user and address, every 403."""
    events: list[tuple[str, str, object]] = []

    def login(actor: audit.Actor, success: bool, logout: bool = False) -> None:
        events.append(("login", actor.user_id, success))

    def alert(actor: audit.Actor, description: str, **details: str) -> None:
        events.append(("alert", actor.user_id, description))
        assert details == {"kind": "restricted-function", "subject": "/api/remote/X"}

    monkeypatch.setattr(audit, "user_authentication", login)
    monkeypatch.setattr(audit, "security_alert", alert)
    settings = Settings(http_auth="basic", http_users=("vera:viewer:vera-password",))
    routes = [Route("/api/remote/{ae}", _ok, methods=["GET", "PUT"])]
    app = Starlette(routes=routes, middleware=authentication(settings))

    async def calls() -> list[int]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://pacsnode") as client:
            right, wrong = ("vera", "vera-password"), ("vera", "wrong")
            answers = [await client.get("/api/remote/X", auth=right) for _ in range(3)]
            answers += [await client.get("/api/remote/X", auth=wrong) for _ in range(2)]
            answers.append(await client.put("/api/remote/X", auth=right))
            return [answer.status_code for answer in answers]

    assert asyncio.run(calls()) == [200, 200, 200, 401, 401, 403]
    assert events == [
        ("login", "vera", True),
        ("login", "vera", False),
        ("login", "vera", False),
        ("alert", "vera", "PUT /api/remote/X needs the admin role; vera is viewer"),
    ]


# --- roles over HTTP --------------------------------------------------------------------


def test_each_role_may_do_its_part_and_no_more(server_factory: ServerFactory) -> None:
    server = _basic_server(server_factory)
    viewer = _add(server, "vera", "viewer")
    operator = _add(server, "otto", "operator")
    remote = {"host": "127.0.0.1", "port": 104}

    assert httpx.get(f"{server.url}/api/me", auth=viewer).json() == {
        "name": "vera",
        "role": "viewer",
        "authenticated": True,
    }
    assert _call(server, "GET", "/dicom-web/studies", viewer) == 200
    assert _call(server, "GET", "/api/jobs", viewer) == 200
    assert _call(server, "GET", "/api/remote", viewer) == 200
    assert _stow(server, viewer) == 403
    assert _call(server, "PUT", "/api/remote/VIEWER", viewer, json=remote) == 403
    assert _call(server, "GET", "/api/users", viewer) == 403

    assert _stow(server, operator) == 200
    assert _call(server, "POST", "/api/jobs/999/retry", operator) == 404  # let through
    assert _call(server, "PUT", "/api/remote/VIEWER", operator, json=remote) == 403
    assert _call(server, "GET", "/api/users", operator) == 403
    new = {"name": "mallory", "password": "mallory-password", "role": "admin"}
    assert _call(server, "POST", "/api/users", operator, json=new) == 403

    assert _call(server, "PUT", "/api/remote/VIEWER", ROOT, json=remote) == 201
    assert _call(server, "GET", "/api/users", ROOT) == 200
    assert _stow(server, ROOT) == 200

    refused = httpx.put(f"{server.url}/api/remote/VIEWER", json=remote, auth=operator)
    assert refused.json()["error"] == (
        "PUT /api/remote/VIEWER needs the admin role; otto is operator"
    )
    assert "refused PUT /api/remote/VIEWER needs the admin role" in server.log()
    assert _call(server, "GET", "/api/jobs", ("vera", "wrong-password")) == 401
    assert "HTTP Basic: wrong password 'vera' from 127.0.0.1" in server.log()
    # In the audit trail: each refusal, and one login for otto's many requests.
    trail = httpx.get(f"{server.url}/api/audit", params={"user": "otto"}, auth=ROOT).json()
    events = [entry["event_type"] for entry in trail]
    assert (events.count("Use of Restricted Function"), events.count("Login")) == (4, 1)


def test_users_are_managed_over_rest(server_factory: ServerFactory) -> None:
    server = _basic_server(server_factory)
    users = f"{server.url}/api/users"
    viewer = _add(server, "vera", "viewer")

    assert (
        httpx.post(users, json={"name": "vera", "password": "x" * 8}, auth=ROOT).status_code == 409
    )
    short = httpx.post(users, json={"name": "ann", "password": "short"}, auth=ROOT)
    assert (short.status_code, short.json()["field"]) == (400, "password")
    odd = httpx.post(users, json={"name": "ann", "password": "x" * 8, "role": "god"}, auth=ROOT)
    assert (odd.status_code, odd.json()["field"]) == (400, "role")
    listed = {user["name"]: user for user in httpx.get(users, auth=ROOT).json()}
    assert (listed["root"]["source"], listed["root"]["role"]) == ("config", "admin")
    assert (listed["vera"]["source"], listed["vera"]["role"]) == ("database", "viewer")
    assert httpx.put(f"{users}/root", json={"role": "viewer"}, auth=ROOT).status_code == 409

    row = _stored_user(server, "vera")
    assert row is not None
    assert row.password_hash.startswith("pbkdf2_sha256$600000$")
    assert "vera-password" not in row.password_hash

    promoted = httpx.put(f"{users}/vera", json={"role": "operator"}, auth=ROOT)
    assert promoted.json()["role"] == "operator"
    assert _stow(server, viewer) == 200

    assert httpx.put(f"{users}/vera", json={"disabled": True}, auth=ROOT).status_code == 200
    assert _call(server, "GET", "/api/me", viewer) == 401
    assert "HTTP Basic: disabled user 'vera'" in server.log()
    httpx.put(f"{users}/vera", json={"disabled": False, "password": "new-password"}, auth=ROOT)
    assert _call(server, "GET", "/api/me", viewer) == 401  # the old password is gone
    assert _call(server, "GET", "/api/me", ("vera", "new-password")) == 200

    assert httpx.delete(f"{users}/vera", auth=ROOT).status_code == 204
    assert httpx.delete(f"{users}/vera", auth=ROOT).status_code == 404
    assert _call(server, "GET", "/api/me", ("vera", "new-password")) == 401
    assert _stored_user(server, "vera") is None


# --- API tokens -------------------------------------------------------------------------


def test_api_tokens_are_made_used_and_revoked(server_factory: ServerFactory) -> None:
    server = _basic_server(server_factory)
    operator = _add(server, "otto", "operator")
    viewer = _add(server, "vera", "viewer")
    tokens = f"{server.url}/api/tokens"

    made = httpx.post(tokens, json={"label": "ci", "expires_days": 30}, auth=operator)
    assert made.status_code == 201, made.text
    secret = made.json()["token"]
    assert secret.startswith("pnt_")
    assert httpx.get(f"{server.url}/api/me", headers=_headers(secret)).json()["name"] == "otto"
    assert _stow(server, secret) == 200  # the token carries its user's role
    assert _call(server, "PUT", "/api/remote/X", secret, json={"host": "h", "port": 1}) == 403

    listed = httpx.get(tokens, auth=operator).json()
    assert [(t["id"], t["label"], t["user"]) for t in listed] == [(made.json()["id"], "ci", "otto")]
    assert listed[0]["last_used_at"] is not None and "token" not in listed[0]
    assert httpx.get(tokens, auth=viewer).json() == []  # only one's own
    assert len(httpx.get(tokens, auth=ROOT).json()) == 1  # an admin sees all
    assert httpx.delete(f"{tokens}/{made.json()['id']}", auth=viewer).status_code == 404
    assert httpx.post(tokens, auth=ROOT).status_code == 409  # config users have none
    never = httpx.post(tokens, json={"expires_days": 0}, auth=operator)
    assert (never.status_code, never.json()["field"]) == (400, "expires_days")
    archive = server.archive()
    try:
        with archive.database.reader.connect() as connection:
            stored = connection.execute(sa.select(api_token.c.token_hash)).scalar_one()
    finally:
        archive.close()
    assert secret not in stored and len(stored) == 64

    assert httpx.delete(f"{tokens}/{made.json()['id']}", auth=operator).status_code == 204
    revoked = httpx.get(f"{server.url}/api/me", headers=_headers(secret))
    assert revoked.status_code == 401
    assert 'error="invalid_token"' in revoked.headers["WWW-Authenticate"]
    assert _call(server, "GET", "/api/me", "pnt_made-up") == 401
    assert secret not in server.log()


def test_expired_token_and_disabled_owner_are_refused(server_factory: ServerFactory) -> None:
    server = _basic_server(server_factory)
    _add(server, "otto", "operator")
    archive = server.archive()
    try:
        users = Users(archive.database)
        _, expired = users.create_token("otto", expires_in=timedelta(days=1))
        with archive.database.writer.begin() as connection:
            connection.execute(
                sa.update(api_token).values(expires_at=datetime.now(UTC) - timedelta(minutes=1))
            )
        _, fresh = users.create_token("otto")
    finally:
        archive.close()

    assert _call(server, "GET", "/api/me", expired) == 401
    assert "API token: token 1 expired" in server.log()
    assert _call(server, "GET", "/api/me", fresh) == 200
    httpx.put(f"{server.url}/api/users/otto", json={"disabled": True}, auth=ROOT)
    assert _call(server, "GET", "/api/me", fresh) == 401


# --- the commands -----------------------------------------------------------------------


def test_user_and_token_commands_serve_a_basic_door(server_factory: ServerFactory) -> None:
    """With users from the commands alone, a basic door needs no http_users at all."""
    server = server_factory(http_auth="basic", start=False)
    config = ["--config", str(server.config_path)]

    refused = _pacsnode("serve", *config)
    assert refused.returncode != 0
    assert "pacsnode user add" in refused.stdout + refused.stderr
    added = _pacsnode("user", "add", "alice", "--role", "admin", *config, stdin="alice-password\n")
    assert added.returncode == 0, added.stderr
    assert _pacsnode("user", "add", "bob", "--password", "bob-password", *config).returncode == 0
    listing = _pacsnode("user", "list", *config).stdout
    assert "alice" in listing and "admin" in listing and "viewer" in listing
    made = _pacsnode("token", "create", "bob", "--label", "script", *config)
    assert made.returncode == 0, made.stderr
    secret = made.stdout.strip()
    server.start()

    assert httpx.get(f"{server.url}/api/me", auth=("alice", "alice-password")).json()["role"] == (
        "admin"
    )
    assert httpx.get(f"{server.url}/api/me", headers=_headers(secret)).json()["name"] == "bob"
    assert _pacsnode("user", "passwd", "bob", *config, stdin="bob-new-password\n").returncode == 0
    assert _call(server, "GET", "/api/me", ("bob", "bob-password")) == 401
    assert _call(server, "GET", "/api/me", ("bob", "bob-new-password")) == 200
    assert _pacsnode("token", "revoke", "1", *config).returncode == 0
    assert _call(server, "GET", "/api/me", secret) == 401
    assert _pacsnode("user", "delete", "bob", *config).returncode == 0
    assert _call(server, "GET", "/api/me", ("bob", "bob-new-password")) == 401
    audited = _pacsnode("audit", "search", "--event", "110113", "--json", *config).stdout
    changes = [json.loads(line) for line in audited.splitlines()]
    assert {entry["event_type"] for entry in changes} == {"User Security Attributes Changed"}
    assert len(changes) == 6  # two adds, a token, a password, a revocation, a delete


# --- OAuth2 -----------------------------------------------------------------------------


@pytest.fixture
def jwt_issuer() -> Iterator[Issuer]:
    running = Issuer()
    running.add_key("key-1")
    yield running
    running.close()


def test_oauth2_role_comes_from_the_token(
    server_factory: ServerFactory, jwt_issuer: Issuer
) -> None:
    server = server_factory(
        http_auth="oauth2", oauth2_issuer=jwt_issuer.url, oauth2_audience=AUDIENCE, start=False
    )
    archive = server.archive()
    try:
        users = Users(archive.database)
        users.add("robot", "robot-password", "operator")
        api_token_secret = users.create_token("robot")[1]
    finally:
        archive.close()
    server.start()
    remote = {"host": "127.0.0.1", "port": 104}

    plain = jwt_issuer.mint(sub="svc-plain")
    assert httpx.get(f"{server.url}/api/me", headers=_headers(plain)).json()["role"] == "viewer"
    assert _call(server, "GET", "/dicom-web/studies", plain) == 200
    assert _stow(server, plain) == 403
    operator = jwt_issuer.mint(sub="svc-operator", roles=["operator"])
    assert _stow(server, operator) == 200
    assert _call(server, "PUT", "/api/remote/VIEWER", operator, json=remote) == 403
    admin = jwt_issuer.mint(sub="svc-admin", scope="openid pacsnode:admin")
    assert _call(server, "PUT", "/api/remote/VIEWER", admin, json=remote) == 201
    assert _stow(server, api_token_secret) == 200  # API tokens work here too
    assert _call(server, "GET", "/api/users", api_token_secret) == 403


# --- the tables on SQLite and PostgreSQL ------------------------------------------------


def test_users_and_tokens_in_the_index(database_url: str) -> None:
    database = open_database(database_url)
    try:
        migrate(database.writer)
        users = Users(database, ["root:viewer:root-password"])
        users.add("alice", "alice-password", "operator")
        with pytest.raises(UserConflict):
            users.add("alice", "alice-password", "viewer")
        with pytest.raises(UserConflict):
            users.add("root", "root-password", "admin")
        with pytest.raises(UserError):
            users.add("bad:name", "alice-password", "viewer")

        assert users.check_password("alice", "alice-password").role == "operator"
        assert users.check_password("root", "root-password").role == "viewer"
        for name, password, reason in [
            ("alice", "wrong-password", "wrong password"),
            ("nobody", "alice-password", "unknown user"),
        ]:
            with pytest.raises(LoginRefused, match=reason):
                users.check_password(name, password)

        token, secret = users.create_token("alice", "ci")
        user, checked = users.check_token(secret)
        assert (user.name, checked.id, checked.label) == ("alice", token.id, "ci")
        assert users.token(token.id).last_used_at is not None

        users.delete("alice")
        assert users.tokens() == []
        with pytest.raises(LoginRefused, match="unknown token"):
            users.check_token(secret)
        assert [(u.name, u.source) for u in users.all()] == [("root", "config")]
    finally:
        database.dispose()

"""``pacsnode user`` and ``pacsnode token``: the HTTP door's users and their API tokens.

Like the other administrative commands these write the index database directly; a
running server sees a new user, password, role or revoked token at the next request.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from pacsnode import audit
from pacsnode.cli.common import (
    ConfigOption,
    DatabaseOption,
    DataDirOption,
    app,
    console,
    fail,
    load,
    open_archive,
)
from pacsnode.cli.security import read_password

if TYPE_CHECKING:
    from pacsnode.archive.users import Users
    from pacsnode.config import Settings

user = typer.Typer(help="List, add, change and delete HTTP users.", no_args_is_help=True)
token = typer.Typer(help="Make, list and revoke API tokens.", no_args_is_help=True)
app.add_typer(user, name="user")
app.add_typer(token, name="token")

NameArg = Annotated[str, typer.Argument(help="The user's name.")]
RoleOption = Annotated[str, typer.Option(help="viewer, operator or admin.")]
PasswordOption = Annotated[
    str | None,
    typer.Option(help="The password; better piped on stdin or typed at the prompt."),
]


@contextmanager
def _users(
    config: Path | None, data_dir: Path | None, database_url: str | None
) -> Iterator[_Session]:
    """The users of the config file and the index database; errors end the command."""
    from pacsnode.archive.users import UserError, UserNotFound, Users

    settings = load(config, data_dir=data_dir, database_url=database_url)
    archive = open_archive(settings)
    try:
        yield _Session(Users(archive.database, settings.http_users), settings)
    except (UserError, UserNotFound) as exc:
        raise fail(str(exc), 1) from exc
    finally:
        archive.close()


@dataclass(frozen=True)
class _Session:
    users: Users
    settings: Settings

    def changed(self, description: str) -> None:
        """The audit trail's record of a change made at this machine's command line."""
        audit.command_change(self.settings, description, kind="user")


def _password(password: str | None) -> str:
    return password if password is not None else read_password()


@user.command("list")
def list_users(
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    database_url: DatabaseOption = None,
) -> None:
    """Show every user, from the config file and from the database."""
    table = Table(title="HTTP users")
    for column in ("name", "role", "disabled", "source", "created"):
        table.add_column(column)
    with _users(config, data_dir, database_url) as session:
        for item in session.users.all():
            created = item.created_at.strftime("%Y-%m-%d %H:%M") if item.created_at else ""
            disabled = "yes" if item.disabled else ""
            table.add_row(item.name, item.role, disabled, item.source, created)
    Console().print(table)


@user.command()
def add(
    name: NameArg,
    role: RoleOption = "viewer",
    password: PasswordOption = None,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    database_url: DatabaseOption = None,
) -> None:
    """Add a user with a role; the password is asked for unless given."""
    with _users(config, data_dir, database_url) as session:
        added = session.users.add(name, _password(password), role)
        session.changed(f"user {added.name} added as {added.role}")
    console.print(f"added {added.name} ({added.role})")


@user.command()
def passwd(
    name: NameArg,
    password: PasswordOption = None,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    database_url: DatabaseOption = None,
) -> None:
    """Set a user's password."""
    with _users(config, data_dir, database_url) as session:
        session.users.change(name, password=_password(password))
        session.changed(f"user {name} changed: password")
    console.print(f"changed the password of {name}")


@user.command()
def change(
    name: NameArg,
    role: Annotated[str | None, typer.Option(help="viewer, operator or admin.")] = None,
    disabled: Annotated[
        bool | None, typer.Option("--disable/--enable", help="Refuse or allow logins.")
    ] = None,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    database_url: DatabaseOption = None,
) -> None:
    """Change a user's role, or disable or enable them."""
    with _users(config, data_dir, database_url) as session:
        changed = session.users.change(name, role=role, disabled=disabled)
        session.changed(f"user {name} changed: role {changed.role}, disabled {changed.disabled}")
    state = ", disabled" if changed.disabled else ""
    console.print(f"{changed.name} is {changed.role}{state}")


@user.command()
def delete(
    name: NameArg,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    database_url: DatabaseOption = None,
) -> None:
    """Delete a user and their API tokens."""
    with _users(config, data_dir, database_url) as session:
        session.users.delete(name)
        session.changed(f"user {name} deleted")
    console.print(f"deleted {name}")


@token.command()
def create(
    name: NameArg,
    label: Annotated[str, typer.Option(help="What the token is for.")] = "",
    expires_days: Annotated[
        float | None, typer.Option(help="Days until it stops working; never by default.")
    ] = None,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    database_url: DatabaseOption = None,
) -> None:
    """Make an API token for a user and print its secret, which is not kept."""
    from pacsnode.archive.users import expiry

    with _users(config, data_dir, database_url) as session:
        made, secret = session.users.create_token(name, label, expiry(expires_days))
        session.changed(f"API token {made.id} made for {made.user}")
    console.print(f"token {made.id} for {made.user}; use it as 'Authorization: Bearer <token>'")
    print(secret)


@token.command("list")
def list_tokens(
    name: Annotated[str | None, typer.Argument(help="Only this user's tokens.")] = None,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    database_url: DatabaseOption = None,
) -> None:
    """Show API tokens (never their secrets)."""
    table = Table(title="API tokens")
    for column in ("id", "user", "label", "created", "expires", "last used"):
        table.add_column(column)
    with _users(config, data_dir, database_url) as session:
        for item in session.users.tokens(name):
            moments = (item.created_at, item.expires_at, item.last_used_at)
            shown = [m.strftime("%Y-%m-%d %H:%M") if m else "" for m in moments]
            table.add_row(str(item.id), item.user, item.label, *shown)
    Console().print(table)


@token.command()
def revoke(
    token_id: Annotated[int, typer.Argument(help="The token's id, from 'token list'.")],
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    database_url: DatabaseOption = None,
) -> None:
    """Revoke an API token."""
    with _users(config, data_dir, database_url) as session:
        session.users.revoke(token_id)
        session.changed(f"API token {token_id} revoked")
    console.print(f"revoked token {token_id}")

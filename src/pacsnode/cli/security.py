"""``pacsnode hash-password``: an ``http_users`` entry without the password in clear."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from pacsnode.cli.common import app, console


@app.command("hash-password")
def hash_password_command(
    password: Annotated[
        str | None,
        typer.Argument(help="The password; better piped on stdin or typed at the prompt."),
    ] = None,
) -> None:
    """Print the pbkdf2_sha256 hash of a password, for http_users = ["name:<hash>"]."""
    from pacsnode.web.auth import hash_password

    if password is None:
        password = read_password()
    if not password:
        console.print("[red]the password is empty[/red]")
        raise typer.Exit(2)
    print(hash_password(password))


def read_password() -> str:
    """The first line of stdin when piped, else a hidden prompt asked twice: a password
    on the command line ends up in the shell history and the process list."""
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    return str(typer.prompt("Password", hide_input=True, confirmation_prompt=True))

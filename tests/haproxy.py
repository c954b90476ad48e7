"""HAProxy (the Debian package) in front of pacsnode nodes, configured by the very
configuration docs/cluster.md documents, with loopback addresses and ports put in."""

from __future__ import annotations

import csv
import io
import re
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import free_port

DOCS = Path(__file__).resolve().parent.parent / "docs" / "cluster.md"
_SERVER = re.compile(r"^(\s*)server node-\w+ [\d.]+:(\d+) check$")


def documented_config() -> str:
    """The ```haproxy block of docs/cluster.md."""
    text = DOCS.read_text()
    return text.split("```haproxy\n", 1)[1].split("```", 1)[0]


@dataclass(frozen=True)
class Backend:
    name: str
    dicom_port: int
    http_port: int


def config_for(
    dicom_port: int, http_port: int, nodes: list[Backend], admin_socket: Path, inter: str
) -> str:
    """The documented configuration bound to loopback ports, with these nodes as servers
    and checks every ``inter`` (tests wait less than an installation needs to)."""
    lines = []
    for line in documented_config().splitlines():
        if line.strip().startswith("stats socket"):
            line = f"    stats socket {admin_socket} mode 600 level admin"
        elif line.strip() == "bind :104":
            line = f"    bind 127.0.0.1:{dicom_port}"
        elif line.strip() == "bind :8042":
            line = f"    bind 127.0.0.1:{http_port}"
        elif "default-server inter 1s" in line:
            line = line.replace("inter 1s", f"inter {inter}")
        if match := _SERVER.match(line):
            if not line.strip().startswith("server node-a"):
                continue  # the nodes are listed once, at node-a's place
            dicom = match.group(2) == "11112"
            lines += [
                f"{match.group(1)}server {node.name} 127.0.0.1:"
                f"{node.dicom_port if dicom else node.http_port} check"
                for node in nodes
            ]
            continue
        lines.append(line)
    return "\n".join(lines) + "\n"


class HAProxy:
    """A running haproxy; ``states`` reads its servers' check states from the admin
    socket."""

    def __init__(self, directory: Path, nodes: list[Backend], inter: str = "500ms") -> None:
        if shutil.which("haproxy") is None:
            pytest.fail("haproxy is not installed (apt-get install haproxy)")
        self.dicom_port = free_port()
        self.http_port = free_port()
        self.admin = directory / "haproxy.sock"
        self.config = directory / "haproxy.cfg"
        self.config.write_text(
            config_for(self.dicom_port, self.http_port, nodes, self.admin, inter)
        )
        self.log = directory / "haproxy.log"
        self.admin.unlink(missing_ok=True)  # a socket left by an earlier run
        checked = subprocess.run(
            ["haproxy", "-c", "-f", str(self.config)], capture_output=True, text=True
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                ["haproxy", "-db", "-f", str(self.config)], stdout=out, stderr=out
            )
        deadline = time.monotonic() + 10
        while not self.admin.exists():
            assert self.process.poll() is None, self.log.read_text()
            assert time.monotonic() < deadline, "haproxy did not start"
            time.sleep(0.05)

    def states(self) -> dict[tuple[str, str], str]:
        """(backend, server) to its status: UP, DOWN, "UP 1/2" while rising…"""
        with socket.socket(socket.AF_UNIX) as sock:
            sock.connect(str(self.admin))
            sock.sendall(b"show stat\n")
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        rows = csv.DictReader(io.StringIO(data.decode().lstrip("# ")))
        return {
            (row["pxname"], row["svname"]): row["status"]
            for row in rows
            if row["svname"] not in ("FRONTEND", "BACKEND")
        }

    def wait_until(self, node: str, status: str, timeout: float = 30) -> None:
        """Until both backends report ``node`` as ``status`` ("UP", "DOWN")."""
        deadline = time.monotonic() + timeout
        while True:
            states = self.states()
            seen = {state for (_backend, server), state in states.items() if server == node}
            if seen == {status}:
                return
            assert time.monotonic() < deadline, f"{node} not {status} in haproxy: {states}"
            time.sleep(0.1)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)

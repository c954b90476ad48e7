"""The administrator's day one at the command line: every expected failure is one line
with exit code 2, commands find the server's archive or refuse, remote AEs are called
by name, deletion asks first, and ``find`` prints tables a person can read."""

from __future__ import annotations

import csv
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import (
    PYDICOM_FILES,
    RunningServer,
    ServerFactory,
    ct_dataset,
    free_port,
    save,
    write_config,
)
from peers import send_datasets
from pydicom.uid import generate_uid
from test_cli import pacsnode

from pacsnode import __version__
from pacsnode.archive.core import Archive
from pacsnode.config import Settings

NO_CONFIG = "none (no --config, $PACSNODE_CONFIG or /etc/pacsnode/pacsnode.toml)"
CT = PYDICOM_FILES / "test_files" / "CT_small.dcm"


def no_archive(data_dir: Path, config: str = NO_CONFIG) -> str:
    return (
        f"no archive in {data_dir}; config file: {config}. Name the archive's config file, "
        "or create an archive with 'pacsnode serve' or 'pacsnode import'\n"
    )


def one_line(result: subprocess.CompletedProcess[str], code: int = 2) -> str:
    """The only line a failed command printed on stderr (no traceback)."""
    assert result.returncode == code, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    return result.stderr


def test_version() -> None:
    result = pacsnode("--version")
    assert (result.returncode, result.stdout) == (0, f"pacsnode {__version__}\n")


def environment(columns: int = 200) -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("PACSNODE_")}
    environ.update(COLUMNS=str(columns), NO_COLOR="1")
    return environ


def test_admin_commands_refuse_to_make_an_archive(tmp_path: Path) -> None:
    """Run without a config where no archive is, they say so and leave nothing behind."""
    here = tmp_path / "somewhere"
    here.mkdir()
    for command in (["stats"], ["remote", "add", "WS1", "10.0.0.1", "104"], ["jobs", "list"]):
        result = subprocess.run(
            [sys.executable, "-m", "pacsnode", *command],
            cwd=here,
            env=environment(),
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 2, result.stderr
        assert result.stderr == no_archive(here / "pacsnode-data"), result.stderr
    assert list(here.iterdir()) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["echo", "127.0.0.1", "104", "--called-ae", "ABCDEFGHIJKLMNOPQRST"],
            "--called-ae: 'ABCDEFGHIJKLMNOPQRST' is not an AE title (1 to 16 characters, no '\\')",
        ),
        (
            ["echo", "127.0.0.1", "104", "--calling-ae", "ABCDEFGHIJKLMNOPQRST"],
            "--calling-ae: 'ABCDEFGHIJKLMNOPQRST' is not an AE title (1 to 16 characters, no '\\')",
        ),
        (
            ["serve", "--ae-title", "ABCDEFGHIJKLMNOPQRST"],
            "configuration error: --ae-title: 'ABCDEFGHIJKLMNOPQRST' is longer than 16 characters",
        ),
        (
            ["echo", "WS1"],
            "no remote AE 'WS1' in the config file (none) or the archive's remote AE table; "
            "give HOST PORT to call a node by its address",
        ),
        (["delete"], "give one of --patient, --study, --series or --instance"),
        (
            ["remote", "add", "ABCDEFGHIJKLMNOPQRST", "10.0.0.1", "104"],
            "ae_title 'ABCDEFGHIJKLMNOPQRST' is not 1 to 16 printable characters without '\\'",
        ),
        (
            ["remote", "add", "WS1", "10.0.0.1", "104", "--offers", "fnd"],
            "offers: unknown 'fnd' (did you mean 'find'?); "
            "use echo, store, find, move, get, commit, mwl, mpps",
        ),
        (["delete", "--study", "1.2.3", "--issuer", "X"], "--issuer goes with --patient"),
    ],
)
def test_expected_failures_are_one_line_with_exit_code_2(args: list[str], message: str) -> None:
    assert one_line(pacsnode(*args)) == message + "\n"


def test_a_misspelt_section_stops_the_server(tmp_path: Path) -> None:
    config = tmp_path / "pacsnode.toml"
    config.write_text('[sever]\nae_title = "WRONG"\n')
    assert one_line(pacsnode("serve", "--config", str(config))) == (
        f"configuration error: {config}: unknown section [sever] (did you mean [server]?)\n"
    )


def test_unusable_data_directories_are_named(tmp_path: Path) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("not a directory\n")
    under_file = pacsnode("import", str(CT), "--data-dir", str(a_file / "data"))
    assert (
        one_line(under_file)
        == f"cannot use the data directory {a_file / 'data'}: Not a directory\n"
    )
    # sysfs refuses even root (Operation not permitted); others get Permission denied
    refused = one_line(pacsnode("serve", "--data-dir", "/sys/pacsnode-test"))
    assert refused in (
        "cannot use the data directory /sys/pacsnode-test: Operation not permitted\n",
        "cannot use the data directory /sys/pacsnode-test: Permission denied\n",
    )
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("someone else's\n")
    assert one_line(pacsnode("import", str(CT), "--data-dir", str(busy))) == (
        f"{busy} holds other files and no archive: give data_dir an empty or new directory\n"
    )
    assert sorted(p.name for p in busy.iterdir()) == ["notes.txt"]


def test_an_unreachable_database_is_named_without_its_password(tmp_path: Path) -> None:
    port = free_port()
    url = f"postgresql+psycopg://pacs:secret@127.0.0.1:{port}/pacs"
    result = pacsnode("stats", "--data-dir", str(tmp_path), "--database-url", url)
    assert one_line(result) == (
        f"cannot open the index database postgresql+psycopg://pacs:***@127.0.0.1:{port}/pacs: "
        f'connection failed: connection to server at "127.0.0.1", port {port} failed: '
        "Connection refused\n"
    )


def test_a_port_in_use_stops_the_server_with_its_name(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        dimse = server_factory(dicom_port=port, start=False)
        result = pacsnode("serve", "--config", str(dimse.config_path))
        assert result.returncode == 2, result.stderr
        assert result.stderr.splitlines()[-1] == (
            f"cannot start: DIMSE port 127.0.0.1:{port}: Address already in use"
        )
        http = server_factory(http_port=port, start=False)
        result = pacsnode("serve", "--config", str(http.config_path))
        assert result.returncode == 2, result.stderr
        assert result.stderr.splitlines()[-1] == (
            f"cannot start: HTTP port 127.0.0.1:{port}: Address already in use"
        )
        assert "Traceback" not in result.stderr


def test_an_unwritable_log_file_is_named(tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "pacsnode.toml", {"log_file": str(tmp_path / "no" / "pacsnode.log")}, []
    )
    assert one_line(pacsnode("serve", "--config", str(config))) == (
        f"cannot write the log file {tmp_path / 'no' / 'pacsnode.log'}: No such file or directory\n"
    )


def test_retrieve_wait_says_when_no_server_works_the_queue(tmp_path: Path) -> None:
    data = tmp_path / "data"
    config = write_config(
        tmp_path / "pacsnode.toml",
        {"data_dir": str(data)},
        [{"ae_title": "REMOTE", "host": "127.0.0.1", "port": free_port()}],
    )
    Archive(Settings(data_dir=data)).close()
    result = pacsnode("retrieve", "REMOTE", "--study", "1.2.3", "--wait", "-c", str(config))
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stdout == "job 1: retrieve study 1.2.3 from REMOTE by C-MOVE\n"
    assert result.stderr.splitlines()[-1] == (
        "job 1 was not started within 10 s: no 'pacsnode serve' works the job queue of this "
        "archive; the job stays queued for when one does"
    )


# --- with a server ----------------------------------------------------------------------


@pytest.fixture
def self_server(server_factory: ServerFactory) -> RunningServer:
    """A server that knows itself as the remote AE SELF (so it can be called by name)."""
    port = free_port()
    return server_factory(
        dicom_port=port, remotes=[{"ae_title": "SELF", "host": "127.0.0.1", "port": port}]
    )


def cli(
    server: RunningServer, *args: str, stdin: str = "", columns: int = 200
) -> subprocess.CompletedProcess[str]:
    """A command run with the server's config file."""
    return subprocess.run(
        [sys.executable, "-m", "pacsnode", *args, "--config", str(server.config_path)],
        input=stdin,
        capture_output=True,
        text=True,
        env=environment(columns),
        timeout=120,
        check=False,
    )


def test_remote_aes_are_called_by_name(self_server: RunningServer, tmp_path: Path) -> None:
    echo = cli(self_server, "echo", "SELF")
    assert echo.returncode == 0, echo.stderr
    assert re.fullmatch(
        rf"C-ECHO SELF@127\.0\.0\.1:{self_server.port}: status 0x0000 in \d+ ms\n", echo.stdout
    )
    assert cli(self_server, "echo", "self").returncode == 0  # regardless of case, when unique
    typo = cli(self_server, "echo", "SELV")
    assert one_line(typo) == (
        f"no remote AE 'SELV' (did you mean 'SELF'?) in the config file "
        f"({self_server.config_path}) or the archive's remote AE table; "
        "give HOST PORT to call a node by its address\n"
    )
    study = generate_uid()
    path = save(ct_dataset(study=study), tmp_path / "ct.dcm")
    stored = cli(self_server, "store", "SELF", str(path))
    assert stored.returncode == 0, stored.stderr
    assert "sent 1 of 1 files" in stored.stdout
    found = cli(self_server, "find", "SELF", "-k", f"StudyInstanceUID={study}", "-f", "csv")
    assert found.returncode == 0, found.stderr
    assert [row["StudyInstanceUID"] for row in csv.DictReader(found.stdout.splitlines())] == [study]
    moved = cli(self_server, "move", "SELF", "SELF", "-k", f"StudyInstanceUID={study}")
    assert moved.returncode == 0, moved.stderr
    assert "C-MOVE to SELF: status 0x0000, 1 completed, 0 failed, 0 warning" in moved.stdout
    # an entry of the run-time table is found as well
    port = str(self_server.port)
    assert cli(self_server, "remote", "add", "RUNTIME", "127.0.0.1", port).returncode == 0
    by_runtime = cli(self_server, "echo", "RUNTIME", "--called-ae", "PACSNODE")
    assert by_runtime.returncode == 0, by_runtime.stderr
    assert f"C-ECHO PACSNODE@127.0.0.1:{port}" in by_runtime.stdout


def test_delete_asks_then_hides_then_removes(self_server: RunningServer, tmp_path: Path) -> None:
    study = generate_uid()
    statuses = send_datasets(self_server.port, [ct_dataset(study=study), ct_dataset(study=study)])
    assert statuses == [0, 0]
    files = sorted((self_server.data_dir / "storage").rglob("*.dcm"))

    declined = cli(self_server, "delete", "--study", study, stdin="n\n")
    assert declined.returncode == 1, declined.stderr
    assert declined.stderr.endswith("Delete? [y/N] nothing deleted\n"), declined.stderr
    assert declined.stdout.startswith(f"study {study}: 2 instances in 2 series of 1 studies, "), (
        declined.stdout
    )
    assert "delete soft (restorable)" in declined.stdout

    soft = cli(self_server, "delete", "--study", study, stdin="y\n")
    assert soft.returncode == 0, soft.stderr
    assert soft.stdout.splitlines()[-1] == f"deleted (soft) study {study}: 2 instances"
    assert sorted((self_server.data_dir / "storage").rglob("*.dcm")) == files
    found = cli(self_server, "find", "SELF", "-k", f"StudyInstanceUID={study}", "-f", "csv")
    assert found.stdout.splitlines() == [found.stdout.splitlines()[0]]  # the header only
    stats = json.loads(cli(self_server, "stats", "--json").stdout)
    assert (stats["studies"], stats["instances"], stats["hidden_instances"]) == (0, 0, 2)

    again = cli(self_server, "delete", "--study", study, "--yes")
    assert again.returncode == 2 and "Traceback" not in again.stderr
    assert again.stderr.splitlines()[-1] == f"no visible study {study} in the archive"
    hard = cli(self_server, "delete", "--study", study, "--hard", "--yes")
    assert hard.returncode == 0, hard.stderr
    assert hard.stdout.splitlines()[-1] == f"deleted (hard) study {study}: 2 instances"
    assert list((self_server.data_dir / "storage").rglob("*.dcm")) == []
    assert json.loads(cli(self_server, "stats", "--json").stdout) == {
        "patients": 0,
        "studies": 0,
        "series": 0,
        "instances": 0,
        "hidden_instances": 0,
        "bytes": 0,
    }


def test_import_lists_what_it_refused(tmp_path: Path) -> None:
    folder = tmp_path / "incoming"
    folder.mkdir()
    good = save(ct_dataset(), folder / "good.dcm")
    broken = folder / "broken.dcm"
    broken.write_bytes(good.read_bytes()[:-1000])  # a transfer cut short
    (folder / "notes.txt").write_text("not DICOM\n")  # found in the folder: skipped
    report = tmp_path / "report.csv"
    result = pacsnode(
        "import",
        str(folder),
        "--verbose",
        "--report",
        str(report),
        "--data-dir",
        str(tmp_path / "d"),
    )
    assert result.returncode == 1, result.stdout + result.stderr
    refused = [line for line in result.stderr.splitlines() if line.startswith("failed ")]
    assert refused == [f"failed {broken}: 0xC000 data set is empty or truncated"]
    rows = list(csv.DictReader(report.open()))
    assert {row["path"]: (row["outcome"], row["status"]) for row in rows} == {
        str(good): ("stored", "0x0000"),
        str(broken): ("failed", "0xC000"),
        str(folder / "notes.txt"): ("skipped", ""),
    }


def test_find_tables_never_wrap_a_uid(self_server: RunningServer) -> None:
    study = "1.2.826.0.1.3680043.8.498.12345678901234567890123456789012345678"
    assert send_datasets(self_server.port, [ct_dataset(study=study)]) == [0]
    key = ("-k", f"StudyInstanceUID={study}")
    wide = cli(self_server, "find", "SELF", *key, columns=250)
    assert any(line.endswith(f" {study} │") for line in wide.stdout.splitlines()), wide.stdout
    middle = cli(self_server, "find", "SELF", *key, columns=120)
    [line] = [line for line in middle.stdout.splitlines() if "…" in line]
    assert re.search(r" 1\.2\.826\.0\S*…\S*12345678 │$", line), middle.stdout
    narrow = cli(self_server, "find", "SELF", *key, columns=80)
    assert f"Study UID    {study}" in narrow.stdout.splitlines(), narrow.stdout
    tree = cli(self_server, "find", "SELF", "--tree", columns=250)
    header = tree.stdout.splitlines()[0].split()
    assert header == ["level", "description", "date", "modality", "instances", "UID"]
    studies = [line for line in tree.stdout.splitlines() if line.startswith("STUDY")]
    assert [line.split()[-1] for line in studies] == [study], tree.stdout

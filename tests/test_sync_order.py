"""What a C-STORE success promises, read in the system calls of the real server (strace):
before the response leaves, the file's data is fsynced, then it is renamed into storage
and its directory is fsynced, and the index's WAL is fsynced after the commit that
indexed it. A power cut after the answer then loses nothing the peer was told is stored.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import RunningServer, ct_dataset, save
from peers import dcmtk

_LINE = re.compile(r"^(\d+) +(\d+\.\d+) (?:<\.\.\. (\w+) resumed>|(\w+)\()(.*)$")
_PATH = re.compile(r"<([^<>]*)>")


@dataclass
class Call:
    thread: str
    name: str
    start: float
    end: float
    text: str

    def paths(self) -> list[str]:
        return _PATH.findall(self.text)


def calls(trace: str) -> list[Call]:
    """Completed system calls with their start and end times, across threads."""
    done: list[Call] = []
    pending: dict[str, Call] = {}
    for line in trace.splitlines():
        match = _LINE.match(line)
        if match is None:
            continue
        pid, moment, resumed, name, rest = match.groups()
        if resumed:
            call = pending.pop(pid, None)
            if call is not None:
                call.end, call.text = float(moment), call.text + rest
                done.append(call)
            continue
        call = Call(pid, name, float(moment), float(moment), rest)
        if rest.endswith("<unfinished ...>"):
            pending[pid] = call
        else:
            done.append(call)
    return sorted(done, key=lambda call: call.end)


def traced(pid: int, output: Path) -> subprocess.Popen[bytes]:
    if shutil.which("strace") is None:
        pytest.fail("strace is not installed (apt-get install strace)")
    syscalls = "fsync,fdatasync,rename,renameat,renameat2,pwrite64,sendmsg,sendto"
    command = ["strace", "-f", "-ttt", "-y", "-e", f"trace={syscalls}", "-o", str(output)]
    tracer = subprocess.Popen([*command, "-p", str(pid)], stderr=subprocess.PIPE)
    assert tracer.stderr is not None
    attached = tracer.stderr.readline()  # "strace: Process N attached", then its threads
    assert b"attached" in attached, attached
    time.sleep(0.5)  # its threads are attached one by one
    return tracer


def test_a_store_is_answered_only_after_file_directory_and_wal_are_synced(
    server: RunningServer, tmp_path: Path
) -> None:
    assert server.process is not None
    study, series = ct_dataset().StudyInstanceUID, ct_dataset().SeriesInstanceUID
    files = [
        save(ct_dataset(study=study, series=series, rows=16, InstanceNumber=n), tmp_path / f"{n}")
        for n in range(3)
    ]
    output = tmp_path / "strace.txt"
    tracer = traced(server.process.pid, output)
    try:
        sent = dcmtk(
            "storescu", "-aec", server.ae_title, "127.0.0.1", str(server.port), *map(str, files)
        )
        assert sent.returncode == 0, sent.stderr
    finally:
        tracer.send_signal(signal.SIGINT)
        tracer.wait(30)
    made = calls(output.read_text())
    storage = str(server.data_dir / "storage")
    renames = [c for c in made if c.name.startswith("rename") and storage in c.text]
    pdata = 'iov_base="\\4\\0'  # a P-DATA-TF PDU: the C-STORE response
    responses = [c for c in made if c.name == "sendmsg" and pdata in c.text]
    assert len(renames) == 3
    wal = f"{server.data_dir}/index.sqlite-wal"
    for rename in renames:
        spooled, placed = re.findall(r'"([^"]+)"', rename.text)[:2]
        answer = next(c for c in responses if c.start > rename.end)
        file_synced = [c for c in made if c.name in ("fsync", "fdatasync") and spooled in c.paths()]
        assert len(file_synced) == 1, "synced once: a second fsync costs the disk a flush"
        assert file_synced[0].end < rename.start, "file synced before its rename"
        directory = str(Path(placed).parent)
        dir_synced = [c for c in made if c.name == "fsync" and directory in c.paths()]
        assert any(rename.end < c.end < answer.start for c in dir_synced), "rename made durable"
        # The association's thread commits and answers (a heartbeat may write the WAL too).
        commit = [
            c
            for c in made
            if c.name == "pwrite64"
            and wal in c.paths()
            and c.thread == answer.thread
            and c.end < answer.start
        ]
        assert commit, "the index row written to the WAL before the answer"
        wal_synced = [c for c in made if c.name == "fsync" and wal in c.paths()]
        assert any(commit[-1].end < c.end < answer.start for c in wal_synced), "WAL synced"

"""Several worker processes serving one node: spread, limits, a killed worker, SIGTERM.

The server runs with ``workers = 2``: a parent that binds the ports and watches, and
two processes that accept on them. Every log line carries its process ID, so the log
says which worker served which association.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
from conftest import RunningServer, ServerFactory, ct_dataset, save
from pdu import rejection
from peers import VERIFICATION, associate
from pydicom.uid import ImplicitVRLittleEndian
from test_durability import Sender, assert_all_kept, instances

pytestmark = pytest.mark.slow

WORKER = re.compile(r"worker (\d+) \(pid (\d+)\) serving")
SERVED = re.compile(r"\[(\d+)\] pacsnode\.dimse: association (\S+)@\S+ -> \S+ released")


def worker_pids(server: RunningServer) -> dict[int, int]:
    """Worker number to process ID, latest first start of each."""
    return {int(n): int(pid) for n, pid in WORKER.findall(server.log())}


def served_by(server: RunningServer) -> Counter[int]:
    """How many associations each process released."""
    return Counter(int(pid) for pid, _calling in SERVED.findall(server.log()))


@pytest.fixture
def node(server_factory: ServerFactory) -> RunningServer:
    return server_factory(workers=2, max_associations=20)


def _files(folder: Path, count: int) -> list[Path]:
    folder.mkdir()
    study, series = ct_dataset().StudyInstanceUID, ct_dataset().SeriesInstanceUID
    return [
        save(ct_dataset(study=study, series=series, InstanceNumber=n), folder / f"{n}.dcm")
        for n in range(count)
    ]


def test_four_senders_are_spread_over_the_workers(node: RunningServer, tmp_path: Path) -> None:
    pids = worker_pids(node)
    assert sorted(pids) == [0, 1] and len(set(pids.values())) == 2
    files = _files(tmp_path / "corpus", 40)
    senders = [
        subprocess.Popen(
            ["storescu", "-aec", "PACSNODE", "127.0.0.1", str(node.port), *map(str, files[n::8])],
            env=dict(os.environ, TCP_NODELAY="1"),
            stderr=subprocess.PIPE,
        )
        for n in range(8)
    ]
    for sender in senders:
        _, errors = sender.communicate(timeout=120)
        assert sender.returncode == 0, errors
    deadline = time.monotonic() + 10
    while sum(served_by(node).values()) < 8 and time.monotonic() < deadline:
        time.sleep(0.1)
    counts = served_by(node)
    assert sum(counts.values()) == 8
    assert set(counts) == set(pids.values())  # each worker served some of them
    archive = node.archive()
    try:
        assert archive.index.stats().instances == 40
    finally:
        archive.close()


def test_associations_held_at_once_are_shared_evenly(node: RunningServer) -> None:
    """Four associations open together land two on each worker (one per core): a
    busier worker lets the other take a new connection first."""
    held = []
    for _ in range(4):
        held.append(associate(node.port, [(VERIFICATION, [ImplicitVRLittleEndian])]))
        assert held[-1].is_established
    for assoc in held:
        assoc.release()
    deadline = time.monotonic() + 10
    while sum(served_by(node).values()) < 4 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert sorted(served_by(node).values()) == [2, 2]


def test_max_associations_holds_across_workers(server_factory: ServerFactory) -> None:
    node = server_factory(workers=2, max_associations=3)
    held = [associate(node.port, [(VERIFICATION, [ImplicitVRLittleEndian])]) for _ in range(3)]
    assert all(assoc.is_established for assoc in held)
    assert rejection(node.port) == (0x02, 0x03, 0x02)  # transient, local limit exceeded
    held.pop().release()
    deadline = time.monotonic() + 10
    while True:  # the place is given back as the releasing worker notices
        again = associate(node.port, [(VERIFICATION, [ImplicitVRLittleEndian])])
        if again.is_established or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert again.is_established
    again.release()
    for assoc in held:
        assoc.release()


def test_a_killed_worker_loses_nothing_acknowledged_and_is_replaced(
    node: RunningServer, tmp_path: Path
) -> None:
    senders = [Sender(node.port, instances(60)) for _ in range(4)]
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.wait_for(5)
    victim = worker_pids(node)[1]
    os.kill(victim, signal.SIGKILL)
    for sender in senders:
        sender.join(120)
        assert not sender.is_alive()
    node.wait_for_log(f"worker 1 (pid {victim}) died", timeout=20)
    deadline = time.monotonic() + 30
    while worker_pids(node)[1] == victim:
        assert time.monotonic() < deadline, "worker 1 not replaced"
        time.sleep(0.1)
    acknowledged = {uid: ds for sender in senders for uid, ds in sender.acknowledged.items()}
    kept = assert_all_kept(node, acknowledged, tmp_path)
    assert kept >= len(acknowledged)
    assert any(len(s.acknowledged) < 60 for s in senders)  # the victim's senders were cut
    # The survivor and the replacement serve: what was not acknowledged goes again.
    for sender in senders:
        rest = [ds for ds in sender.datasets if str(ds.SOPInstanceUID) not in acknowledged]
        resend = Sender(node.port, rest)
        resend.run()
        assert len(resend.acknowledged) == len(rest)
    spools = [p for p in (node.data_dir / "tmp").iterdir() if p.name == f"spool-{victim}"]
    assert not spools  # the dead worker's spool directory went with it


def test_sigterm_drains_every_worker(node: RunningServer) -> None:
    sender = Sender(node.port, instances(100))
    sender.start()
    sender.wait_for(10)
    pids = list(worker_pids(node).values())
    assert node.stop() == 0
    sender.join(60)
    log = node.log()
    assert "shutting down" in log and "stopped" in log
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists()

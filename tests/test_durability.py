"""Nothing acknowledged is ever lost: kill -9, SIGTERM, a full disk, a lost index."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from conftest import RunningServer, ServerFactory, ct_dataset, dataset_bytes, sigkill
from filesystems import tmpfs
from peers import VERIFICATION, associate, send_datasets, stored_checksum
from pydicom import Dataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
STUDY_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"


class Sender(threading.Thread):
    """A modality sending instances one by one, remembering what was acknowledged."""

    def __init__(self, port: int, datasets: list[Dataset], timeout: float = 8) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.datasets = datasets
        self.timeout = timeout
        self.acknowledged: dict[str, Dataset] = {}
        self.error: str | None = None

    def run(self) -> None:
        # pynetdicom notices a killed or aborting peer only when its DIMSE timeout
        # expires: keep it short where the server is killed, but far above the few
        # milliseconds a store takes.
        contexts = [(CTImageStorage, [ExplicitVRLittleEndian])]
        assoc = associate(self.port, contexts, timeout=self.timeout)
        try:
            for ds in self.datasets:
                if not assoc.is_established:
                    return
                response = assoc.send_c_store(ds)
                if response and response.get("Status") == 0x0000:
                    self.acknowledged[str(ds.SOPInstanceUID)] = ds
        except Exception as exc:  # the server went away mid-send
            self.error = repr(exc)
        finally:
            if assoc.is_established:
                assoc.release()

    def wait_for(self, count: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while len(self.acknowledged) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(self.acknowledged) >= count, f"only {len(self.acknowledged)} acknowledged"


def instances(count: int, rows: int = 64) -> list[Dataset]:
    study, series = ct_dataset().StudyInstanceUID, ct_dataset().SeriesInstanceUID
    return [
        ct_dataset(study=study, series=series, rows=rows, InstanceNumber=n)
        for n in range(1, count + 1)
    ]


def encoded(ds: Dataset, directory: Path) -> bytes:
    path = directory / f"{ds.SOPInstanceUID}.dcm"
    ds.save_as(path, enforce_file_format=True)
    return dataset_bytes(path)


def partial_files(server: RunningServer) -> list[Path]:
    """Files left in the temporary directory (each process's spool directory may stay)."""
    return [path for path in (server.data_dir / "tmp").rglob("*") if path.is_file()]


def assert_all_kept(server: RunningServer, acknowledged: dict[str, Dataset], tmp: Path) -> int:
    """Every acknowledged instance is indexed, on disk, byte-identical and checksummed;
    every index row has its file. Returns how many instances the index holds."""
    archive = server.archive()
    try:
        for uid, ds in acknowledged.items():
            found = archive.index.find_instance(uid)
            assert found is not None, f"acknowledged {uid} is not in the index"
            path = archive.storage.absolute(found.file_path)
            assert stored_checksum(path.read_bytes()) == found.checksum
            assert dataset_bytes(path) == encoded(ds, tmp)
        with archive.database.reader.connect() as connection:
            rows = connection.execute(sa.text("SELECT file_path FROM instance")).all()
        for (file_path,) in rows:
            assert archive.storage.absolute(file_path).is_file(), f"{file_path} is missing"
        return len(rows)
    finally:
        archive.close()


def test_kill_9_during_a_500_instance_send_loses_nothing_acknowledged(
    server: RunningServer, tmp_path: Path
) -> None:
    datasets = instances(500)
    acknowledged: dict[str, Dataset] = {}
    remaining = datasets
    for kill_after in (120, 150):  # two crashes at different points of the stream
        sender = Sender(server.port, remaining)
        sender.start()
        sender.wait_for(kill_after)
        assert server.process is not None
        sigkill(server.process)
        sender.join(30)
        assert not sender.is_alive()
        acknowledged.update(sender.acknowledged)
        remaining = [ds for ds in remaining if str(ds.SOPInstanceUID) not in acknowledged]
        server.start()
        assert not partial_files(server), "partial files survived"
    # Nothing is killed now. As a modality would, send again what an association ended
    # without acknowledging (pynetdicom can lose a response to its own reactor thread).
    while remaining := [ds for ds in datasets if str(ds.SOPInstanceUID) not in acknowledged]:
        sender = Sender(server.port, remaining, timeout=30)
        sender.run()
        assert sender.acknowledged, sender.error  # every association makes progress
        acknowledged.update(sender.acknowledged)
    assert len(acknowledged) == 500
    assert assert_all_kept(server, acknowledged, tmp_path) == 500


def test_kill_9_under_four_senders_loses_nothing_acknowledged(
    server: RunningServer, tmp_path: Path
) -> None:
    batches = [instances(50) for _ in range(4)]
    senders = [Sender(server.port, batch) for batch in batches]
    for sender in senders:
        sender.start()
    deadline = time.monotonic() + 60
    while sum(len(s.acknowledged) for s in senders) < 60 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.process is not None
    sigkill(server.process)
    acknowledged: dict[str, Dataset] = {}
    for sender in senders:
        sender.join(30)
        assert not sender.is_alive()
        acknowledged.update(sender.acknowledged)
    assert 60 <= len(acknowledged) < 200
    server.start()
    assert not partial_files(server), "partial files survived"
    stored = assert_all_kept(server, acknowledged, tmp_path)
    # Stored but not acknowledged: at most the one each sender had in flight.
    assert len(acknowledged) <= stored <= len(acknowledged) + len(senders)
    senders = [
        Sender(server.port, [ds for ds in batch if str(ds.SOPInstanceUID) not in acknowledged])
        for batch in batches
    ]
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join(60)
        acknowledged.update(sender.acknowledged)
    assert len(acknowledged) == 200
    assert assert_all_kept(server, acknowledged, tmp_path) == 200


def test_sigterm_lets_in_flight_stores_finish(server: RunningServer, tmp_path: Path) -> None:
    sender = Sender(server.port, instances(400, rows=128))
    sender.start()
    sender.wait_for(40)
    assert server.stop() == 0
    sender.join(30)
    log = server.log()
    assert "shutting down" in log and "stopped" in log
    stored = assert_all_kept(server, sender.acknowledged, tmp_path)
    # What was stored but not acknowledged can only be the one in flight at the abort.
    assert len(sender.acknowledged) <= stored <= len(sender.acknowledged) + 1


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 3 MB filesystem."""
    with tmpfs(tmp_path / "small", "3m") as mounted:
        yield mounted


def test_full_disk_answers_a700_and_keeps_the_association(
    server_factory: ServerFactory, small_disk: Path, tmp_path: Path
) -> None:
    server = server_factory(
        data_dir=small_disk / "data", database_url=f"sqlite:///{tmp_path / 'index.sqlite'}"
    )
    datasets = instances(12, rows=512)  # 512 KiB each: the disk fills after a few
    assoc = associate(
        server.port,
        [(CTImageStorage, [ExplicitVRLittleEndian]), (VERIFICATION, ["1.2.840.10008.1.2"])],
    )
    acknowledged: dict[str, Dataset] = {}
    refusals = []
    for ds in datasets:
        response = assoc.send_c_store(ds)
        if response.Status == 0:
            acknowledged[str(ds.SOPInstanceUID)] = ds
        else:
            refusals.append((int(response.Status), str(response.ErrorComment)))
    assert assoc.send_c_echo().Status == 0  # still talking
    assoc.release()
    assert acknowledged and refusals
    assert all(status == 0xA700 for status, _ in refusals), refusals
    assert all("disk full" in comment for _, comment in refusals), refusals
    assert "disk full" in server.log()
    assert assert_all_kept(server, acknowledged, tmp_path) == len(acknowledged)


def test_lost_index_answers_a700(
    server_factory: ServerFactory, postgres_url: str, tmp_path: Path
) -> None:
    elsewhere = {"ae_title": "ELSEWHERE", "host": "127.0.0.1", "port": 9}
    server = server_factory(database_url=postgres_url, remotes=[elsewhere])
    assert send_datasets(server.port, [ct_dataset()]) == [0]
    admin = sa.create_engine(
        postgres_url.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT"
    )
    name = sa.make_url(postgres_url).database
    with admin.connect() as connection:
        connection.exec_driver_sql(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        connection.exec_driver_sql(
            f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
        )
    try:
        assoc = associate(server.port, [(CTImageStorage, [ExplicitVRLittleEndian])])
        response = assoc.send_c_store(ct_dataset())
        assoc.release()
        assert response.Status == 0xA700
        assert "index unavailable" in response.ErrorComment
        assert "index unavailable" in server.log()
        assert not list(server.data_dir.glob("storage/**/*.dcm"))[1:]  # only the first
        query = Dataset()
        query.QueryRetrieveLevel = "STUDY"
        query.StudyInstanceUID = ""
        assoc = associate(server.port, [(STUDY_ROOT_FIND, [ExplicitVRLittleEndian])])
        find = [status for status, _ in assoc.send_c_find(query, STUDY_ROOT_FIND)]
        assoc.release()
        assert [(s.Status, s.ErrorComment) for s in find] == [(0xA700, "index unavailable")]
        query.StudyInstanceUID = "1.2.3"
        assoc = associate(server.port, [(STUDY_ROOT_MOVE, [ExplicitVRLittleEndian])])
        move = [status for status, _ in assoc.send_c_move(query, "ELSEWHERE", STUDY_ROOT_MOVE)]
        assoc.release()
        assert [(s.Status, s.ErrorComment) for s in move] == [(0xA701, "index unavailable")]
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        admin.dispose()


def test_memory_stays_flat_for_a_1_gb_multiframe(server: RunningServer, tmp_path: Path) -> None:
    frames, rows = 1024, 512  # 1024 frames of 512x1024 16-bit: 1 GiB of pixel data
    header = ct_dataset(rows=rows)
    header.Columns = 1024
    header.NumberOfFrames = frames
    del header.PixelData
    source = tmp_path / "big.dcm"
    header.save_as(source, enforce_file_format=True)
    length = frames * rows * 1024 * 2
    digest = hashlib.sha256()
    with source.open("ab") as out:
        element = b"\xe0\x7f\x10\x00OW\x00\x00" + length.to_bytes(4, "little")
        out.write(element)
        digest.update(element)
        chunk = bytes(range(256)) * 4096
        for _ in range(length // len(chunk)):
            out.write(chunk)
            digest.update(chunk)
    assert server.process is not None
    assoc = associate(server.port, [(CTImageStorage, [ExplicitVRLittleEndian])], max_pdu=1 << 20)
    assert assoc.send_c_store(source).Status == 0
    assoc.release()
    status = Path(f"/proc/{server.process.pid}/status").read_text()
    peak_kib = int(
        next(line for line in status.splitlines() if line.startswith("VmHWM")).split()[1]
    )
    assert peak_kib < 300 * 1024, f"peak resident memory {peak_kib // 1024} MiB"
    archive = server.archive()
    found = archive.index.find_instance(str(header.SOPInstanceUID))
    assert found is not None
    stored = archive.storage.absolute(found.file_path)
    archive.close()
    tail = hashlib.sha256()
    with stored.open("rb") as fp:
        fp.seek(stored.stat().st_size - len(element) - length)
        while block := fp.read(1 << 22):
            tail.update(block)
    assert tail.hexdigest() == digest.hexdigest()

"""Three pacsnode nodes on one PostgreSQL database and one storage directory, behind a
real HAProxy configured as docs/cluster.md says.

The nodes (node-a with two worker processes, node-b and node-c with one) and HAProxy
live for the whole module; each test leaves them running. Senders are DCMTK storescu
and pynetdicom, through HAProxy or to one node's own port; destinations are DCMTK
storescp writing a file per received instance, so that a duplicate is counted.
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from conftest import (
    RunningServer,
    ct_dataset,
    dataset_bytes,
    free_port,
    postgres_database,
    save,
    write_config,
)
from haproxy import Backend, HAProxy, documented_config
from peers import associate, pacsnode_cli, send_datasets, stored_checksum
from pydicom import Dataset, dcmread
from pydicom.uid import ImplicitVRLittleEndian
from test_dicomweb import parts
from test_durability import Sender, encoded, instances
from test_routing import StoreScp

from pacsnode.archive.core import Archive
from pacsnode.config import load_settings
from pacsnode.net.health_check import check_lines
from pacsnode.workflows.routing import RULES_SECONDS

pytestmark = pytest.mark.slow

AE = "PACS"
NAMES = ("node-a", "node-b", "node-c")
STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
STUDY_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"
STORED = re.compile(r"association \S+ -> \S+ released after [\d.]+ s: (\d+) stored")


@dataclass
class Cluster:
    nodes: dict[str, RunningServer]
    proxy: HAProxy
    storage: Path
    """The shared storage directory."""
    routed: StoreScp
    """The routing destination, DEST (started and stopped by the tests)."""
    moved: StoreScp
    """The C-MOVE destination, MOVEDEST (always running)."""

    def archive(self, name: str = "node-a") -> Archive:
        """The archive as that node sees it (settings from its config file)."""
        return Archive(load_settings(self.nodes[name].config_path, environ={}))

    def url(self, name: str) -> str:
        return self.nodes[name].url


def _settings(
    directory: Path, name: str, database_url: str, storage: Path, **extra: Any
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A node's [server] and [cluster] sections."""
    server = {
        "ae_title": AE,
        "dicom_port": free_port(),
        "http_port": free_port(),
        "data_dir": str(directory / f"{name}-data"),
        "bind_address": "127.0.0.1",
        "log_level": "INFO",
        "workers": 1,
        "job_retry_delay": 0.5,
        "job_max_attempts": 30,
        "shutdown_grace": 10,
        "max_associations": 40,
        "acse_timeout": 4,  # a routing job stuck on a silent destination fails soon
        **extra,
    }
    cluster = {
        "node": name,
        "database_url": database_url,
        "storage": str(storage),
        "job_lease": 5.0,  # renewed every 1.7 s, even on a busy machine
        "drain_seconds": 1.5,  # above haproxy's inter 500ms times fall 2
    }
    return server, cluster


def _start_all(nodes: list[RunningServer]) -> None:
    """Start nodes together (they migrate one after the other) and wait for each."""
    threads = [threading.Thread(target=node.start, kwargs={"timeout": 60}) for node in nodes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for node in nodes:
        assert node.process is not None and node.process.poll() is None, node.log()[-3000:]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    directory = tmp_path_factory.mktemp("cluster")
    storage = directory / "shared"
    routed = StoreScp(directory / "routed", options=("+xa", "-uf"))
    moved = StoreScp(directory / "moved", options=("+xa", "-uf"))
    remotes = [
        {"ae_title": "DEST", "host": "127.0.0.1", "port": routed.port},
        {"ae_title": "MOVEDEST", "host": "127.0.0.1", "port": moved.port},
    ]
    nodes: dict[str, RunningServer] = {}
    proxy: HAProxy | None = None
    with postgres_database() as database_url:
        try:
            moved.start()
            for name in NAMES:
                extra = {"workers": 2} if name == "node-a" else {}
                server, section = _settings(directory, name, database_url, storage, **extra)
                config = write_config(
                    directory / f"{name}.toml", server, remotes, {"cluster": section}
                )
                nodes[name] = RunningServer(
                    config,
                    Path(server["data_dir"]),
                    server["dicom_port"],
                    AE,
                    directory / f"{name}.log",
                    database_url,
                    server["http_port"],
                )
            _start_all(list(nodes.values()))
            proxy = HAProxy(
                directory,
                [Backend(name, node.port, node.http_port) for name, node in nodes.items()],
            )
            for name in NAMES:
                proxy.wait_until(name, "UP")
            yield Cluster(nodes, proxy, storage, routed, moved)
        finally:
            if proxy is not None:
                proxy.stop()
            for node in nodes.values():
                node.kill()
            routed.stop()
            moved.stop()


# --- helpers ---------------------------------------------------------------------------


def wait_for(check: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := check()):
        assert time.monotonic() < deadline, f"{what} within {timeout} s"
        time.sleep(0.1)
    return found


def stored_per_node(cluster: Cluster) -> dict[str, int]:
    """Instances each node stored, from its log's association summaries."""
    return {
        name: sum(int(n) for n in STORED.findall(node.log()))
        for name, node in cluster.nodes.items()
    }


def study_files(directory: Path, count: int, **attributes: Any) -> list[Path]:
    directory.mkdir(parents=True)
    first = ct_dataset(**attributes)
    study, series = first.StudyInstanceUID, first.SeriesInstanceUID
    return [
        save(
            ct_dataset(study=study, series=series, InstanceNumber=n, **attributes),
            directory / f"{n}.dcm",
        )
        for n in range(count)
    ]


def storescu(port: int, files: list[Path]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["storescu", "-aec", AE, "127.0.0.1", str(port), *map(str, files)],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, TCP_NODELAY="1"),
        check=False,
    )


def received(destination: StoreScp) -> Counter[str]:
    """SOP Instance UIDs of the files a storescp wrote, each counted."""
    counts: Counter[str] = Counter()
    for path in destination.directory.iterdir():
        try:
            counts[str(dcmread(path, stop_before_pixels=True).SOPInstanceUID)] += 1
        except Exception:  # still being written
            continue
    return counts


def jobs(cluster: Cluster, kind: str) -> list[dict[str, Any]]:
    answer = httpx.get(f"{cluster.url('node-b')}/api/jobs", params={"limit": 1000})
    return [job for job in answer.json() if job["kind"] == kind]


def find_instances(port: int, study_uid: str, series_uid: str) -> list[Dataset]:
    """C-FIND at IMAGE level: the instances of a series, as this node finds them."""
    query = Dataset()
    query.QueryRetrieveLevel = "IMAGE"
    query.StudyInstanceUID = study_uid
    query.SeriesInstanceUID = series_uid
    query.SOPInstanceUID = ""
    assoc = associate(port, [(STUDY_ROOT_FIND, [ImplicitVRLittleEndian])], called_ae=AE)
    assert assoc.is_established
    try:
        return [
            identifier
            for status, identifier in assoc.send_c_find(query, STUDY_ROOT_FIND)
            if status and status.Status in (0xFF00, 0xFF01)
        ]
    finally:
        assoc.release()


# --- the tests -------------------------------------------------------------------------


def test_a_cluster_node_refuses_sqlite_in_one_line(tmp_path: Path) -> None:
    config = tmp_path / "pacsnode.toml"
    config.write_text(
        '[server]\ndata_dir = "data"\n[cluster]\nnode = "node-x"\n'
        'database_url = "sqlite:///index.sqlite"\nstorage = "shared"\n'
    )
    done = subprocess.run(
        [sys.executable, "-m", "pacsnode", "serve", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"configuration error: {config}: [cluster] database_url: sqlite is not PostgreSQL: "
        "the nodes of a cluster share one PostgreSQL index (SQLite serves one node only)"
    )
    assert not (tmp_path / "data").exists() and not (tmp_path / "index.sqlite").exists()


def test_the_documented_check_is_the_c_echo_pacsnode_makes() -> None:
    """docs/cluster.md's tcp-check lines are what ``python -m pacsnode.net.health_check
    PACS`` prints (the tests below run that configuration)."""
    documented = [line.strip() for line in documented_config().splitlines()]
    made = check_lines(AE)
    start = documented.index(made[0])
    assert documented[start : start + len(made)] == made
    printed = subprocess.run(
        [sys.executable, "-m", "pacsnode.net.health_check", AE],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert [line.strip() for line in printed.splitlines()] == made


def test_four_senders_through_haproxy_and_every_node_sees_everything(
    cluster: Cluster, tmp_path: Path
) -> None:
    before = stored_per_node(cluster)
    files = study_files(tmp_path / "spread", 48, PatientID="SPREAD")
    uids = {str(dcmread(path).SOPInstanceUID) for path in files}
    first = dcmread(files[0])
    study, series = str(first.StudyInstanceUID), str(first.SeriesInstanceUID)
    batches = [files[n::12] for n in range(12)]  # 12 associations, 4 at a time
    results: list[subprocess.CompletedProcess[str]] = []

    def send(batch: list[Path]) -> None:
        results.append(storescu(cluster.proxy.dicom_port, batch))

    for round_ in range(3):
        senders = [
            threading.Thread(target=send, args=(batch,))
            for batch in batches[round_ * 4 : round_ * 4 + 4]
        ]
        for sender in senders:
            sender.start()
        for sender in senders:
            sender.join()
    assert [result.returncode for result in results] == [0] * 12, [r.stderr for r in results]

    def logged() -> dict[str, int] | None:  # a node logs an association as it ends
        now = stored_per_node(cluster)
        return now if sum(now.values()) - sum(before.values()) == 48 else None

    after = wait_for(logged, "the nodes' logs account for 48 instances")
    per_node = {name: after[name] - before[name] for name in NAMES}
    assert sum(per_node.values()) == 48
    assert all(count > 0 for count in per_node.values()), per_node  # spread over all three

    # /api/cluster on any node lists the three, live, with their version.
    answer = httpx.get(f"{cluster.url('node-c')}/api/cluster").json()
    assert answer["node"] == "node-c" and answer["cluster"] is True
    assert [node["name"] for node in answer["nodes"]] == list(NAMES)
    assert {node["version"] for node in answer["nodes"]} == {
        httpx.get(f"{cluster.url('node-a')}/api/system").json()["version"]
    }

    # HTTP through HAProxy goes round the nodes.
    proxied = f"http://127.0.0.1:{cluster.proxy.http_port}/api/system"
    assert {httpx.get(proxied).json()["node"] for _ in range(6)} == set(NAMES)

    # C-FIND on every node sees every instance.
    for name, node in cluster.nodes.items():
        found = find_instances(node.port, study, series)
        assert {str(ds.SOPInstanceUID) for ds in found} == uids, name

    # The index is one: one study with exact counters, the files in the shared storage,
    # each named by the node that wrote it.
    archive = cluster.archive()
    try:
        with archive.database.reader.connect() as connection:
            count = connection.execute(
                sa.text("SELECT num_instances FROM study WHERE study_instance_uid = :uid"),
                {"uid": study},
            ).scalar_one()
            paths = connection.execute(sa.text("SELECT file_path FROM instance")).scalars().all()
        assert count == 48
        writers = Counter(re.search(r"\.(node-\w)-[0-9a-f]+\.dcm$", p).group(1) for p in paths)
        assert set(writers) == set(NAMES)
        for path in paths:
            assert (cluster.storage / "storage" / path).is_file()
    finally:
        archive.close()

    # Logs and audit messages name the node.
    for name, node in cluster.nodes.items():
        assert f"[{name}:" in node.log()
        audit_dir = node.data_dir / "audit"
        text = "".join(p.read_text() for p in audit_dir.glob("audit-*.log"))
        assert f'AuditSourceID=\\"{name}\\"' in text, name


def test_what_node_a_received_node_b_moves_and_serves_byte_identical(
    cluster: Cluster, tmp_path: Path
) -> None:
    files = study_files(tmp_path / "on-a", 5, PatientID="MOVED")
    original = {str(dcmread(path).SOPInstanceUID): path for path in files}
    result = storescu(cluster.nodes["node-a"].port, files)
    assert result.returncode == 0, result.stderr
    first = dcmread(files[0])

    # C-MOVE from node B to MOVEDEST (storescp).
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.StudyInstanceUID = first.StudyInstanceUID
    assoc = associate(
        cluster.nodes["node-b"].port, [(STUDY_ROOT_MOVE, [ImplicitVRLittleEndian])], called_ae=AE
    )
    assert assoc.is_established
    try:
        statuses = [s.Status for s, _ in assoc.send_c_move(query, "MOVEDEST", STUDY_ROOT_MOVE)]
    finally:
        assoc.release()
    assert statuses[-1] == 0x0000
    moved = wait_for(
        lambda: (
            {
                str(dcmread(p).SOPInstanceUID): p
                for p in cluster.moved.directory.iterdir()
                if str(dcmread(p, stop_before_pixels=True).SOPInstanceUID) in original
            }
            if len(received(cluster.moved).keys() & original.keys()) == 5
            else None
        ),
        "five moved instances at storescp",
    )
    for uid, path in original.items():
        assert dataset_bytes(moved[uid]) == dataset_bytes(path)

    # WADO-RS from node B, as stored (transfer-syntax=*).
    for uid, path in original.items():
        response = httpx.get(
            f"{cluster.url('node-b')}/dicom-web/studies/{first.StudyInstanceUID}"
            f"/series/{first.SeriesInstanceUID}/instances/{uid}",
            headers={"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'},
        )
        assert response.status_code == 200
        [(_headers, body)] = parts(response)
        served = tmp_path / f"{uid}.served"
        served.write_bytes(body)
        assert dataset_bytes(served) == dataset_bytes(path)


def test_a_remote_ae_added_with_the_cli_serves_on_every_node(cluster: Cluster) -> None:
    """`pacsnode remote add` on node B's config writes the shared index; node C moves
    to the new AE within seconds, without a restart."""
    config = str(cluster.nodes["node-b"].config_path)
    added = pacsnode_cli(
        "remote", "add", "LATEAE", "127.0.0.1", str(cluster.moved.port), "--config", config
    )
    assert added.returncode == 0, added.stderr
    try:
        wait_for(
            lambda: httpx.get(f"{cluster.url('node-c')}/api/remote/LATEAE").status_code == 200,
            "node C knows LATEAE",
        )
        ds = ct_dataset(PatientID="LATE")
        assert send_datasets(cluster.nodes["node-a"].port, [ds]) == [0]
        query = Dataset()
        query.QueryRetrieveLevel = "STUDY"
        query.StudyInstanceUID = ds.StudyInstanceUID
        assoc = associate(
            cluster.nodes["node-c"].port,
            [(STUDY_ROOT_MOVE, [ImplicitVRLittleEndian])],
            called_ae=AE,
        )
        assert assoc.is_established
        try:
            answers = [s.Status for s, _ in assoc.send_c_move(query, "LATEAE", STUDY_ROOT_MOVE)]
        finally:
            assoc.release()
        assert answers[-1] == 0x0000
        wait_for(lambda: ds.SOPInstanceUID in received(cluster.moved), "moved to LATEAE")
    finally:
        pacsnode_cli("remote", "delete", "LATEAE", "--config", config)


def test_a_rule_added_on_node_a_routes_what_node_c_receives_exactly_once(
    cluster: Cluster,
) -> None:
    destination = cluster.routed.start()
    rules = f"{cluster.url('node-a')}/api/routes"
    rule = {"name": "to-dest", "destinations": ["DEST"], "calling_ae": ["ROUTED"]}
    assert httpx.post(rules, json=rule).status_code == 201
    stable = {
        "name": "stable",
        "destinations": ["DEST"],
        "calling_ae": ["STABLE"],
        "wait_for_stable_study": 2.0,
    }
    assert httpx.post(rules, json=stable).status_code == 201
    wait_for(
        lambda: (
            {"to-dest", "stable"}
            <= {r["name"] for r in httpx.get(f"{cluster.url('node-c')}/api/routes").json()}
        ),
        "node C has the rules",
    )
    try:
        # Received on node C, routed once.
        first = [ct_dataset(PatientID="ROUTED") for _ in range(3)]
        assert send_datasets(cluster.nodes["node-c"].port, first, calling_ae="ROUTED") == [0] * 3
        uids = {str(ds.SOPInstanceUID) for ds in first}
        wait_for(lambda: uids <= received(destination).keys(), "routed instances at DEST")

        # A study arriving on all three nodes at once, held until stable: one job sends
        # it, once.
        study = [ct_dataset(study="1.2.826.0.1.99.17", InstanceNumber=n) for n in range(9)]
        start = threading.Barrier(3)

        def send(name: str, part: list[Dataset]) -> None:
            start.wait()
            assert send_datasets(cluster.nodes[name].port, part, calling_ae="STABLE") == [0] * 3

        senders = [
            threading.Thread(target=send, args=(name, study[n::3])) for n, name in enumerate(NAMES)
        ]
        for sender in senders:
            sender.start()
        for sender in senders:
            sender.join()
        study_uids = {str(ds.SOPInstanceUID) for ds in study}
        wait_for(lambda: study_uids <= received(destination).keys(), "the stable study at DEST")
        study_jobs = [
            j for j in jobs(cluster, "route") if j["payload"]["study"] == "1.2.826.0.1.99.17"
        ]
        assert len(study_jobs) == 1

        # The destination down for a while, and the node that queued the job killed.
        destination.stop()
        late = ct_dataset(PatientID="ROUTED")
        assert send_datasets(cluster.nodes["node-c"].port, [late], calling_ae="ROUTED") == [0]

        def failed_once() -> bool:
            job = [
                j
                for j in jobs(cluster, "route")
                if j["payload"]["instances"] == [late.SOPInstanceUID]
            ]
            return bool(job) and job[0]["attempts"] >= 1

        wait_for(failed_once, "a failed attempt to the stopped destination")
        cluster.nodes["node-c"].kill()
        destination.start()
        wait_for(lambda: late.SOPInstanceUID in received(destination), "the late instance at DEST")
        wait_for(
            lambda: all(j["status"] == "done" for j in jobs(cluster, "route")), "route jobs done"
        )
        counts = received(destination)
        assert {
            uid: counts[uid] for uid in uids | study_uids | {late.SOPInstanceUID}
        } == dict.fromkeys(uids | study_uids | {late.SOPInstanceUID}, 1)
    finally:
        for name in ("to-dest", "stable"):
            httpx.delete(f"{rules}/{name}")
        destination.stop()
        node_c = cluster.nodes["node-c"]
        if node_c.process is None or node_c.process.poll() is not None:
            node_c.start(timeout=60)
        cluster.proxy.wait_until("node-c", "UP")


def test_the_same_instance_sent_to_all_nodes_at_once_is_kept_once(
    cluster: Cluster, tmp_path: Path
) -> None:
    study, series = "1.2.826.0.1.99.18", "1.2.826.0.1.99.18.1"
    datasets = [
        ct_dataset(study=study, series=series, PatientID="TWICE", InstanceNumber=n)
        for n in range(12)
    ]
    start = threading.Barrier(3)
    statuses: dict[str, list[int]] = {}

    def send(name: str) -> None:
        start.wait()
        statuses[name] = send_datasets(cluster.nodes[name].port, datasets)

    senders = [threading.Thread(target=send, args=(name,)) for name in NAMES]
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join()
    assert statuses == dict.fromkeys(NAMES, [0] * 12)  # duplicates kept: success
    archive = cluster.archive("node-b")
    try:
        with archive.database.reader.connect() as connection:
            counters = connection.execute(
                sa.text(
                    "SELECT p.num_studies, p.num_series, p.num_instances, st.num_series, "
                    "st.num_instances, se.num_instances FROM patient p "
                    "JOIN study st ON st.patient_pk = p.pk JOIN series se ON se.study_pk = st.pk "
                    "WHERE st.study_instance_uid = :uid"
                ),
                {"uid": study},
            ).all()
            rows = (
                connection.execute(
                    sa.text(
                        "SELECT sop_instance_uid FROM instance i "
                        "JOIN series se ON se.pk = i.series_pk WHERE se.series_instance_uid = :uid"
                    ),
                    {"uid": series},
                )
                .scalars()
                .all()
            )
        assert counters == [(1, 1, 12, 1, 12, 12)]
        assert sorted(rows) == sorted(str(ds.SOPInstanceUID) for ds in datasets)
        for ds in datasets:
            stored = archive.index.find_instance(str(ds.SOPInstanceUID))
            assert stored is not None
            digest = hashlib.sha1(str(ds.SOPInstanceUID).encode()).hexdigest()
            copies = list((cluster.storage / "storage").rglob(f"{digest}.*.dcm"))
            assert copies == [archive.storage.absolute(stored.file_path)]  # the others went
            assert dataset_bytes(copies[0]) == encoded(ds, tmp_path)
    finally:
        archive.close()


class Silent:
    """A destination that accepts connections and never answers: a routing job sending
    to it stays running (until the ACSE timeout) on the node that claimed it."""

    def __init__(self, port: int) -> None:
        self.server = socket.create_server(("127.0.0.1", port))
        self.held: list[socket.socket] = []
        threading.Thread(target=self._hold, daemon=True).start()

    def _hold(self) -> None:
        while True:
            try:
                self.held.append(self.server.accept()[0])
            except OSError:
                return

    def close(self) -> None:
        self.server.close()
        for sock in self.held:
            sock.close()


def running_jobs_of(cluster: Cluster, node: str) -> list[int]:
    archive = cluster.archive("node-b")
    try:
        with archive.database.reader.connect() as connection:
            return list(
                connection.execute(
                    sa.text(
                        "SELECT pk FROM job WHERE status = 'running' AND claimed_by LIKE :node"
                    ),
                    {"node": f"{node}:%"},
                ).scalars()
            )
    finally:
        archive.close()


def test_kill_9_of_a_node_under_four_senders_loses_nothing_acknowledged(
    cluster: Cluster, tmp_path: Path
) -> None:
    rules = f"{cluster.url('node-b')}/api/routes"
    rule = {"name": "kill", "destinations": ["DEST"], "calling_ae": ["KILLROUTE"]}
    assert httpx.post(rules, json=rule).status_code == 201
    wait_for(
        lambda: (
            "kill" in {r["name"] for r in httpx.get(f"{cluster.url('node-a')}/api/routes").json()}
        ),
        "node A has the rule",
    )
    time.sleep(RULES_SECONDS)  # and so has every process of it, whichever answered
    silent = Silent(cluster.routed.port)
    victim = cluster.nodes["node-a"]
    senders = [Sender(cluster.proxy.dicom_port, instances(60)) for _ in range(4)]
    try:
        for sender in senders:
            sender.start()
        for sender in senders:
            sender.wait_for(5)
        # Node A queues routing jobs and runs some of them, stuck on the silent DEST.
        routed = [ct_dataset(PatientID="KILLROUTE") for _ in range(6)]
        assert send_datasets(victim.port, routed, calling_ae="KILLROUTE") == [0] * 6
        held = wait_for(lambda: running_jobs_of(cluster, "node-a"), "a job running on node A")
        # An in-flight file of node B that node A's restart must not touch.
        foreign = cluster.storage / "tmp" / "node-b" / "spool-1" / "in-flight.dcm"
        foreign.parent.mkdir(parents=True, exist_ok=True)
        foreign.write_bytes(b"receiving")
        assert victim.process is not None
        os.kill(victim.process.pid, signal.SIGKILL)
        victim.process.wait(10)
        for sender in senders:
            sender.join(60)
            assert not sender.is_alive()
    finally:
        silent.close()
    cluster.routed.start()
    acknowledged = {uid: ds for s in senders for uid, ds in s.acknowledged.items()}
    assert any(len(s.acknowledged) < 60 for s in senders)  # node A's senders were cut

    # HAProxy sends new associations to the others: the rest goes through at once.
    for sender in senders:
        rest = [ds for ds in sender.datasets if str(ds.SOPInstanceUID) not in acknowledged]
        again = Sender(cluster.proxy.dicom_port, rest)
        again.run()
        assert len(again.acknowledged) == len(rest), again.error
        acknowledged.update(again.acknowledged)
    assert len(acknowledged) == 240

    # Byte for byte on the shared storage, every acknowledged instance; a file for
    # every row.
    archive = cluster.archive("node-c")
    try:
        for uid, ds in acknowledged.items():
            found = archive.index.find_instance(uid)
            assert found is not None, f"acknowledged {uid} is not in the index"
            path = archive.storage.absolute(found.file_path)
            assert stored_checksum(path.read_bytes()) == found.checksum
            assert dataset_bytes(path) == encoded(ds, tmp_path)
        with archive.database.reader.connect() as connection:
            files = connection.execute(sa.text("SELECT file_path FROM instance")).scalars().all()
        for file_path in files:
            assert archive.storage.absolute(file_path).is_file(), f"{file_path} is missing"
    finally:
        archive.close()

    # Node A's jobs: its leases lapse and the other nodes finish them; each routed
    # instance reaches DEST once (none got through while A held them).
    routed_uids = {str(ds.SOPInstanceUID) for ds in routed}
    wait_for(lambda: routed_uids <= received(cluster.routed).keys(), "node A's routing done")
    counts = received(cluster.routed)
    assert {uid: counts[uid] for uid in routed_uids} == dict.fromkeys(routed_uids, 1)
    done = wait_for(
        lambda: (
            [j for j in jobs(cluster, "route") if j["id"] in held and j["status"] == "done"]
            if all(j["status"] == "done" for j in jobs(cluster, "route") if j["id"] in held)
            else None
        ),
        "node A's jobs done elsewhere",
    )
    assert len(done) == len(held)
    assert not running_jobs_of(cluster, "node-a")

    # Node A comes back: it cleans up its own spool only.
    victim.start(timeout=60)
    cluster.proxy.wait_until("node-a", "UP")
    assert foreign.read_bytes() == b"receiving"
    stale = [p for p in (cluster.storage / "tmp" / "node-a").rglob("*") if p.is_file()]
    assert not stale
    foreign.unlink()
    httpx.delete(f"{rules}/kill")


def test_rolling_restart_of_all_three_under_load_refuses_no_association(
    cluster: Cluster, tmp_path: Path
) -> None:
    """Four storescu senders through HAProxy, a new association every few instances,
    while each node in turn is stopped with SIGTERM, started, and seen up by HAProxy."""
    folder = tmp_path / "rolling"
    folder.mkdir()
    study = ct_dataset(PatientID="ROLLING")
    made = iter(range(1_000_000))
    lock = threading.Lock()
    done = threading.Event()
    results: list[tuple[list[Path], subprocess.CompletedProcess[str]]] = []

    def new_file() -> Path:
        with lock:
            number = next(made)
        instance = ct_dataset(
            study=study.StudyInstanceUID, series=study.SeriesInstanceUID, InstanceNumber=number
        )
        return save(instance, folder / f"{number}.dcm")

    def sender() -> None:
        while not done.is_set():
            files = [new_file() for _ in range(3)]
            results.append((files, storescu(cluster.proxy.dicom_port, files)))

    senders = [threading.Thread(target=sender) for _ in range(4)]
    for thread in senders:
        thread.start()
    try:
        wait_for(lambda: len(results) >= 8, "the senders under way")
        for name in NAMES:
            node = cluster.nodes[name]
            started = len(results)
            assert node.stop() == 0  # drains: leaves the balancer, then its associations
            assert "leaving the load balancer" in node.log()
            wait_for(lambda n=started: len(results) > n, f"stores while {name} is down")
            node.start(timeout=60)
            cluster.proxy.wait_until(name, "UP")
    finally:
        done.set()
        for thread in senders:
            thread.join(120)
    refused = [(r.returncode, r.stderr[-500:]) for _files, r in results if r.returncode != 0]
    assert not refused
    assert all("E:" not in r.stderr for _files, r in results), "storescu reported an error"
    sent = [path for files, _r in results for path in files]
    archive = cluster.archive("node-b")
    try:
        for path in sent:
            found = archive.index.find_instance(str(dcmread(path).SOPInstanceUID))
            assert found is not None, f"{path.name} was acknowledged but is not stored"
    finally:
        archive.close()
    per_node = stored_per_node(cluster)
    assert all(count > 0 for count in per_node.values())
    # Each node failed HAProxy's C-ECHO check (refused while leaving) before its ports
    # closed, and ended no association early.
    balancer = cluster.proxy.log.read_text()
    for name, node in cluster.nodes.items():
        assert f"pacsnode_dicom/{name} is DOWN, reason: Layer7 invalid response" in balancer
        assert "aborted (shutting down)" not in node.log()

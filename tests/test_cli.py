"""The ``pacsnode`` command as an administrator runs it: a real subprocess, real files."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from conftest import (
    PYDICOM_FILES,
    RunningServer,
    ServerFactory,
    dataset_bytes,
    free_port,
    write_config,
)
from pydicom import dcmread

from pacsnode.archive.core import Archive
from pacsnode.archive.schema import instance_metadata
from pacsnode.config import Settings, load_settings

GOOD_FILES = {
    "a/CT_small.dcm": PYDICOM_FILES / "test_files" / "CT_small.dcm",
    "a/b/MR_small.dcm": PYDICOM_FILES / "test_files" / "MR_small.dcm",
    "c/JPEG-lossy.dcm": PYDICOM_FILES / "test_files" / "JPEG-lossy.dcm",
    "c/d/e/chrH31.dcm": PYDICOM_FILES / "charset_files" / "chrH31.dcm",
}


def pacsnode(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m pacsnode ARGS`` with no PACSNODE_* setting leaking in from outside."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("PACSNODE_")}
    environ["COLUMNS"] = "200"  # rich wraps tables and help at the terminal width
    environ["NO_COLOR"] = "1"
    environ.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "pacsnode", *args],
        capture_output=True,
        text=True,
        errors="replace",
        timeout=timeout,
        env=environ,
        check=False,
    )


def sop_instance_uid(path: Path) -> str:
    return str(dcmread(path, stop_before_pixels=True).SOPInstanceUID)


def outcome_count(output: str, outcome: str) -> int:
    """The number printed next to an outcome in the import summary table (0 if absent)."""
    match = re.search(rf"\b{outcome}\W+(\d+)\b", output)
    return int(match.group(1)) if match else 0


def copy_files(sources: dict[str, Path], root: Path) -> list[Path]:
    copies = []
    for relative, source in sources.items():
        target = root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        copies.append(Path(shutil.copyfile(source, target)))
    return copies


def make_tree(root: Path) -> tuple[list[Path], list[Path], list[Path]]:
    """A nested folder of good DICOM files, two broken DICOM files and a text file."""
    good = copy_files(GOOD_FILES, root)
    notes = root / "a" / "notes.txt"
    notes.write_text("not a DICOM file\n")
    truncated = root / "a" / "b" / "broken.dcm"
    shutil.copyfile(PYDICOM_FILES / "test_files" / "MR_truncated.dcm", truncated)
    garbage = root / "c" / "d" / "meta_then_garbage.dcm"
    ct = (PYDICOM_FILES / "test_files" / "CT_small.dcm").read_bytes()
    meta_length = len(ct) - len(dataset_bytes(PYDICOM_FILES / "test_files" / "CT_small.dcm"))
    garbage.write_bytes(ct[:meta_length] + b"this is not a data set at all. " * 20)
    return good, [truncated, garbage], [notes]


def open_archive(data_dir: Path, database_url: str = "") -> Archive:
    return Archive(Settings(data_dir=data_dir, database_url=database_url))


def assert_holds_exactly(archive: Archive, good: list[Path]) -> None:
    for source in good:
        found = archive.index.find_instance(sop_instance_uid(source))
        assert found is not None, f"{source.name} is not in the index"
        stored = archive.storage.absolute(found.file_path)
        assert dataset_bytes(stored) == dataset_bytes(source), source.name
    assert archive.index.stats().instances == len(good)
    assert len(list(archive.storage.root.rglob("*.dcm"))) == len(good)


def test_import_of_a_folder_tree_stores_the_good_and_names_the_bad(
    tmp_path: Path, database_url: str
) -> None:
    good, bad, other = make_tree(tmp_path / "incoming")
    data_dir = tmp_path / "data"

    first = pacsnode(
        "import",
        str(tmp_path / "incoming"),
        "--data-dir",
        str(data_dir),
        "--database-url",
        database_url,
    )

    assert first.returncode == 1, first.stdout + first.stderr
    assert outcome_count(first.stdout, "stored") == len(good), first.stdout
    assert outcome_count(first.stdout, "failed") == len(bad), first.stdout
    assert outcome_count(first.stdout, "skipped") == len(other), first.stdout
    assert skipped_files(first.stdout) == set(other), first.stdout
    reasons = re.findall(r"^\s*(\d+) x 0x([0-9A-F]{4}) (\S.*)$", first.stdout, re.MULTILINE)
    assert sum(int(count) for count, _, _ in reasons) == len(bad), first.stdout
    assert {status for _, status, _ in reasons} == {"C000"}, first.stdout
    assert any("truncated" in comment for _, _, comment in reasons), first.stdout

    archive = open_archive(data_dir, database_url)
    try:
        assert_holds_exactly(archive, good)
        for source in good:  # the sources are read, never moved or changed
            assert source.exists()
        with archive.database.reader.connect() as connection:  # ready for WADO-RS metadata
            documents = sa.select(sa.func.count()).select_from(instance_metadata)
            assert connection.execute(documents).scalar_one() == len(good)
    finally:
        archive.close()

    again = pacsnode(
        "import", *map(str, good), "--data-dir", str(data_dir), "--database-url", database_url
    )
    assert again.returncode == 0, again.stdout + again.stderr
    assert outcome_count(again.stdout, "duplicate") == len(good), again.stdout
    assert outcome_count(again.stdout, "stored") == 0, again.stdout
    assert outcome_count(again.stdout, "failed") == 0, again.stdout

    archive = open_archive(data_dir, database_url)
    try:
        assert_holds_exactly(archive, good)
    finally:
        archive.close()


def skipped_files(output: str) -> set[Path]:
    """The files the import summary reports as skipped."""
    return {Path(p) for p in re.findall(r"^\s*(\S.*): skipped: not DICOM$", output, re.MULTILINE)}


def test_import_of_a_cd_skips_what_is_not_dicom_and_exits_0(
    tmp_path: Path, database_url: str
) -> None:
    """A CD without DICOMDIR holds a README, a viewer and an autorun file beside the
    images: those are skipped, and the import succeeds. Named on the command line, a
    file that is not DICOM fails; so does a DICOM file that is broken."""
    cd = tmp_path / "cd"
    good = copy_files(GOOD_FILES, cd / "IMAGES")
    readme = cd / "README.TXT"
    readme.write_text("Images of the patient. Start VIEWER/VIEWER.EXE to see them.\n")
    viewer = cd / "VIEWER" / "VIEWER.EXE"
    viewer.parent.mkdir()
    viewer.write_bytes(b"MZ\x90\x00" + bytes(range(256)) * 8)
    autorun = cd / "AUTORUN.INF"
    autorun.write_text("[autorun]\nopen=VIEWER\\VIEWER.EXE\n")
    data_dir = tmp_path / "data"
    options = ("--data-dir", str(data_dir), "--database-url", database_url)

    result = pacsnode("import", str(cd), *options)

    assert result.returncode == 0, result.stdout + result.stderr
    assert outcome_count(result.stdout, "stored") == len(good), result.stdout
    assert outcome_count(result.stdout, "skipped") == 3, result.stdout
    assert outcome_count(result.stdout, "failed") == 0, result.stdout
    assert skipped_files(result.stdout) == {readme, viewer, autorun}, result.stdout
    archive = open_archive(data_dir, database_url)
    try:
        assert_holds_exactly(archive, good)
    finally:
        archive.close()

    named = pacsnode("import", str(readme), *options)
    assert named.returncode == 1, named.stdout + named.stderr
    assert outcome_count(named.stdout, "failed") == 1, named.stdout
    assert "1 x 0xC000 not a DICOM file" in named.stdout, named.stdout
    assert not skipped_files(named.stdout)

    broken = cd / "IMAGES" / "broken.dcm"
    shutil.copyfile(PYDICOM_FILES / "test_files" / "MR_truncated.dcm", broken)
    again = pacsnode("import", str(cd), *options)
    assert again.returncode == 1, again.stdout + again.stderr
    assert outcome_count(again.stdout, "failed") == 1, again.stdout
    assert re.search(r"1 x 0xC000 .*truncated", again.stdout), again.stdout
    assert outcome_count(again.stdout, "skipped") == 3, again.stdout


def test_stats_prints_what_an_import_stored(tmp_path: Path) -> None:
    good, _, _ = make_tree(tmp_path / "incoming")
    data_dir = tmp_path / "data"
    imported = pacsnode("import", *map(str, good), "--data-dir", str(data_dir))
    assert imported.returncode == 0, imported.stdout + imported.stderr

    result = pacsnode("stats", "--data-dir", str(data_dir))

    assert result.returncode == 0, result.stdout + result.stderr
    counts = dict(re.findall(r"\b(patients|studies|series|instances)\W+(\d+)\b", result.stdout))
    assert counts["instances"] == str(len(good)), result.stdout
    archive = open_archive(data_dir)
    try:
        numbers = archive.index.stats()
    finally:
        archive.close()
    assert counts == {
        "patients": str(numbers.patients),
        "studies": str(numbers.studies),
        "series": str(numbers.series),
        "instances": str(numbers.instances),
    }


def test_stats_of_an_empty_archive_prints_zero(tmp_path: Path) -> None:
    open_archive(tmp_path / "empty").close()
    result = pacsnode("stats", "--data-dir", str(tmp_path / "empty"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"\binstances\W+0\b", result.stdout), result.stdout
    assert result.stderr == f"archive {tmp_path / 'empty'} (config none)\n"


def store_and_check(server: RunningServer, root: Path, good: list[Path]) -> None:
    """``pacsnode store`` a folder; every DICOM file must arrive with its exact data set."""
    (root / "readme.txt").write_text("skipped, not DICOM\n")

    result = pacsnode("store", "127.0.0.1", str(server.port), str(root))

    assert result.returncode == 0, result.stdout + result.stderr
    assert f"sent {len(good)} of {len(good)} files" in result.stdout, result.stdout
    assert "1 not DICOM, skipped" in result.stdout, result.stdout
    archive = server.archive()
    try:
        assert_holds_exactly(archive, good)
    finally:
        archive.close()


def test_store_sends_files_that_arrive_byte_for_byte(server: RunningServer, tmp_path: Path) -> None:
    """CT, MR, a JPEG Extended and a charset file (two of them Secondary Capture)."""
    good = copy_files(GOOD_FILES, tmp_path / "outgoing")
    store_and_check(server, tmp_path / "outgoing", good)


def test_store_sends_uncompressed_files_byte_for_byte(
    server: RunningServer, tmp_path: Path
) -> None:
    uncompressed = {k: v for k, v in GOOD_FILES.items() if "JPEG" not in k}
    good = copy_files(uncompressed, tmp_path / "outgoing")
    store_and_check(server, tmp_path / "outgoing", good)


def test_store_keeps_a_jpeg_baseline_file_compressed(server: RunningServer, tmp_path: Path) -> None:
    """pacsnode accepts JPEG Baseline, so the file needs no conversion on the way."""
    source = PYDICOM_FILES / "test_files" / "SC_rgb_jpeg_dcmtk.dcm"
    good = copy_files({"SC_rgb_jpeg_dcmtk.dcm": source}, tmp_path / "outgoing")
    store_and_check(server, tmp_path / "outgoing", good)
    archive = server.archive()
    try:
        found = archive.index.find_instance(sop_instance_uid(source))
        assert found is not None
        assert found.transfer_syntax_uid == "1.2.840.10008.1.2.4.50"
    finally:
        archive.close()


def test_store_to_a_port_where_nothing_listens_exits_2(tmp_path: Path) -> None:
    source = Path(shutil.copyfile(GOOD_FILES["a/CT_small.dcm"], tmp_path / "ct.dcm"))
    result = pacsnode("store", "127.0.0.1", str(free_port()), str(source))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "association" in result.stderr, result.stderr


def test_echo_succeeds_with_status_0000(server: RunningServer) -> None:
    result = pacsnode("echo", "127.0.0.1", str(server.port), "--called-ae", server.ae_title)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "status 0x0000" in result.stdout, result.stdout


def test_echo_to_a_port_where_nothing_listens_exits_2() -> None:
    result = pacsnode("echo", "127.0.0.1", str(free_port()))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "status 0x0000" not in result.stdout


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ([], ["serve", "import", "echo", "store", "stats", "--help"]),
        (
            ["serve"],
            [
                "--ae-title",
                "--dicom-port",
                "--http-port",
                "--data-dir",
                "--database-url",
                "--config",
                "--log-level",
            ],
        ),
        (["import"], ["--data-dir", "--database-url", "--config"]),
        (["echo"], ["--called-ae", "--calling-ae"]),
        (["store"], ["--called-ae", "--calling-ae"]),
        (["stats"], ["--data-dir", "--database-url", "--config"]),
    ],
)
def test_help_names_the_main_options(command: list[str], expected: list[str]) -> None:
    result = pacsnode(*command, "--help")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Usage:" in result.stdout
    for option in expected:
        assert option in result.stdout, f"{option} missing from {command} --help"


def test_a_flag_beats_the_config_file(server_factory: ServerFactory) -> None:
    server = server_factory(ae_title="FILEAE", start=False)
    server.extra_args = ["--ae-title", "FLAGAE"]
    server.start()
    assert "DIMSE server FLAGAE listening" in server.log()
    assert "FILEAE" not in server.log()
    echo = pacsnode("echo", "127.0.0.1", str(server.port), "--called-ae", "FLAGAE")
    assert echo.returncode == 0, echo.stdout + echo.stderr


def test_the_environment_beats_the_file_and_loses_to_the_flag(
    server_factory: ServerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PACSNODE_AE_TITLE", "ENVAE")  # inherited by the server processes
    from_environment = server_factory(ae_title="FILEAE")
    assert "DIMSE server ENVAE listening" in from_environment.log()

    from_flag = server_factory(ae_title="FILEAE", start=False)
    from_flag.extra_args = ["--ae-title", "FLAGAE"]
    from_flag.start()
    assert "DIMSE server FLAGAE listening" in from_flag.log()
    assert "ENVAE" not in from_flag.log()


def test_load_settings_orders_file_environment_flag(tmp_path: Path) -> None:
    config = write_config(tmp_path / "pacsnode.toml", {"ae_title": "FILEAE"}, [])
    environ = {"PACSNODE_AE_TITLE": "ENVAE"}
    assert load_settings(config, {}, environ={}).ae_title == "FILEAE"
    assert load_settings(config, {"ae_title": None}, environ).ae_title == "ENVAE"
    assert load_settings(config, {"ae_title": "FLAGAE"}, environ).ae_title == "FLAGAE"


def test_cli_data_dir_follows_file_environment_flag(tmp_path: Path) -> None:
    """The same order through the real CLI: the command looks for the archive where the
    winner says, and makes none there."""
    dirs = {name: tmp_path / name for name in ("from_file", "from_env", "from_flag")}
    config = write_config(tmp_path / "pacsnode.toml", {"data_dir": str(dirs["from_file"])}, [])
    env = {"PACSNODE_DATA_DIR": str(dirs["from_env"])}

    def refused_in(result: subprocess.CompletedProcess[str]) -> str:
        assert result.returncode == 2, result.stdout + result.stderr
        match = re.match(r"no archive in (\S+); config file: (\S+)\. ", result.stderr)
        assert match, result.stderr
        assert match.group(2) == str(config)
        return Path(match.group(1)).name

    assert refused_in(pacsnode("stats", "--config", str(config))) == "from_file"
    assert refused_in(pacsnode("stats", "--config", str(config), env=env)) == "from_env"
    flagged = pacsnode(
        "stats", "--config", str(config), "--data-dir", str(dirs["from_flag"]), env=env
    )
    assert refused_in(flagged) == "from_flag"
    assert not any(path.exists() for path in dirs.values())


def test_config_named_by_pacsnode_config_is_used(tmp_path: Path) -> None:
    data_dir = tmp_path / "named"
    config = write_config(tmp_path / "env.toml", {"data_dir": str(data_dir)}, [])
    open_archive(data_dir).close()
    result = pacsnode("stats", env={"PACSNODE_CONFIG": str(config)}, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr == f"archive {data_dir} (config {config})\n"


def test_a_bad_config_exits_2_with_the_reason(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('[server]\nae_titel = "TYPO"\n')
    result = pacsnode("stats", "--config", str(config))
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr == (
        f"configuration error: {config}: [server] has no key 'ae_titel' "
        "(did you mean 'ae_title'?)\n"
    )

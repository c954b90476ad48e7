"""Settings come from a TOML file, then PACSNODE_* variables, then flags."""

from __future__ import annotations

from pathlib import Path

import pytest

from pacsnode.archive.remotes import Remotes
from pacsnode.config import ConfigError, RemoteAE, load_settings


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pacsnode.toml"
    path.write_text(text)
    return path


def test_defaults_are_the_documented_ones() -> None:
    settings = load_settings(environ={})
    assert settings.ae_title == "PACSNODE"
    assert settings.dicom_port == 11112
    assert settings.http_port == 8042
    assert settings.max_associations == 30
    assert settings.duplicate_policy == "keep"
    assert settings.resolved_database_url.startswith("sqlite:///")
    assert settings.resolved_database_url.endswith("pacsnode-data/index.sqlite")


def test_file_then_environment_then_flags(tmp_path: Path) -> None:
    config = write(
        tmp_path,
        '[server]\nae_title = "FROMFILE"\ndicom_port = 104\nhttp_port = 8080\n'
        'data_dir = "/srv/pacs"\n',
    )
    environ = {"PACSNODE_DICOM_PORT": "2104", "PACSNODE_HTTP_PORT": "9090"}
    settings = load_settings(config, {"http_port": 7070, "ae_title": None}, environ)
    assert settings.ae_title == "FROMFILE"  # file only (a None flag is no flag)
    assert settings.dicom_port == 2104  # environment beats the file
    assert settings.http_port == 7070  # the flag beats both
    assert settings.data_dir == Path("/srv/pacs")
    assert settings.resolved_database_url == "sqlite:////srv/pacs/index.sqlite"


def test_config_file_named_by_environment(tmp_path: Path) -> None:
    config = write(tmp_path, '[server]\nae_title = "ENVFILE"\n')
    settings = load_settings(environ={"PACSNODE_CONFIG": str(config)})
    assert settings.ae_title == "ENVFILE"


def test_remote_aes_and_per_ae_duplicate_policy(tmp_path: Path) -> None:
    config = write(
        tmp_path,
        '[server]\nduplicate_policy = "keep"\n'
        '[[remote_ae]]\nae_title = "STORESCP"\nhost = "127.0.0.1"\nport = 11113\n'
        '[[remote_ae]]\nae_title = "CDRCLIENT"\nhost = "10.0.0.5"\nport = 104\n'
        'duplicate_policy = "overwrite"\n',
    )
    settings = load_settings(config, environ={})
    assert settings.remote_ae[0] == RemoteAE("STORESCP", "127.0.0.1", 11113)
    remotes = Remotes(settings)
    assert remotes.get("CDRCLIENT") is not None
    assert remotes.duplicate_policy_for("CDRCLIENT") == "overwrite"
    assert remotes.duplicate_policy_for("STORESCP") == "keep"
    assert remotes.duplicate_policy_for("UNKNOWN") == "keep"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[server]\nae_titel = "X"\n', "unknown keys: ae_titel"),
        ('[server]\ndicom_port = "abc"\n', "dicom_port"),
        ('[server]\nduplicate_policy = "merge"\n', "duplicate_policy"),
        ('[[remote_ae]]\nae_title = "X"\nhost = "h"\n', "needs port"),
        ('[[remote_ae]]\nae_title = "X"\nhost = "h"\nport = 1\ncolour = 2\n', "colour"),
        ('[server]\nae_title = "MUCH_TOO_LONG_AE_TITLE"\n', "1 to 16"),
        ("[server\n", "config file"),
    ],
)
def test_bad_settings_are_named(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(write(tmp_path, text), environ={})


def test_lists_come_from_toml_arrays_or_comma_separated_variables(tmp_path: Path) -> None:
    config = tmp_path / "pacsnode.toml"
    config.write_text('[server]\nmpps_destinations = ["RIS", "PACS2"]\n')
    assert load_settings(config, environ={}).mpps_destinations == ("RIS", "PACS2")
    environ = {"PACSNODE_IAN_SUBSCRIBERS": "RIS, VIEWER"}
    assert load_settings(None, environ=environ).ian_subscribers == ("RIS", "VIEWER")

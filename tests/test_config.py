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
        (
            '[sever]\nae_title = "X"\n',
            "{file}: unknown section [sever] (did you mean [server]?)",
        ),
        (
            '[[remote_aes]]\nae_title = "X"\n',
            "{file}: unknown section [[remote_aes]] (did you mean [[remote_ae]]?)",
        ),
        (
            '[remote_ae]\nae_title = "X"\n',
            "{file}: write [[remote_ae]], one table per entry, not [remote_ae]",
        ),
        ('ae_title = "X"\n[server]\n', "{file}: ae_title must be written under [server]"),
        (
            '[server]\nae_titel = "X"\n',
            "{file}: [server] has no key 'ae_titel' (did you mean 'ae_title'?)",
        ),
        ('[server]\nwallpaper = "red"\n', "{file}: [server] has no key 'wallpaper'"),
        ('[server]\ndicom_port = "abc"\n', "{file}: [server] dicom_port: 'abc' is not an integer"),
        (
            '[server]\nnetwork_timeout = "soon"\n',
            "{file}: [server] network_timeout: 'soon' is not a number",
        ),
        (
            '[server]\nhttp_tls = "maybe"\n',
            "{file}: [server] http_tls: 'maybe' is not true or false",
        ),
        ("[server]\nae_title = 104\n", "{file}: [server] ae_title: 104 is not a string"),
        (
            '[server]\nduplicate_policy = "merge"\n',
            "{file}: [server] duplicate_policy: 'merge' is not one of "
            "'keep', 'overwrite', 'refuse'",
        ),
        (
            '[server]\nlog_level = "chatty"\n',
            "{file}: [server] log_level: 'CHATTY' is not one of DEBUG, INFO, WARNING, ERROR",
        ),
        (
            '[server]\nae_title = "MUCH_TOO_LONG_AE_TITLE"\n',
            "{file}: [server] ae_title: 'MUCH_TOO_LONG_AE_TITLE' is longer than 16 characters",
        ),
        ('[[remote_ae]]\nae_title = "X"\nhost = "h"\n', "{file}: [[remote_ae]] #1 (X) needs port"),
        (
            '[[remote_ae]]\nae_title = "A"\nhost = "h"\nport = 1\n'
            '[[remote_ae]]\nae_title = "WS1"\nhots = "h"\nport = 1\n',
            "{file}: [[remote_ae]] #2 (WS1) has no key 'hots' (did you mean 'host'?)",
        ),
        (
            '[[remote_ae]]\nae_title = "WS1"\nhost = "h"\nport = "x"\n',
            "{file}: [[remote_ae]] #1 (WS1) port: 'x' is not an integer",
        ),
        (
            '[[remote_ae]]\nae_title = "A"\nhost = "h"\nport = 1\noffers = ["fnd"]\n',
            "{file}: [[remote_ae]] #1 (A) offers: unknown service 'fnd' (did you mean 'find'?); "
            "the services are echo, store, find, move, get, commit, mwl, mpps",
        ),
        (
            '[[route]]\nname = "r"\ndestination = ["A"]\n',
            "{file}: [[route]] #1 (r) has no key 'destination' (did you mean 'destinations'?)",
        ),
        (
            "[server\n",
            "config file {file}: Expected ']' at the end of a table declaration "
            "(at line 1, column 8)",
        ),
    ],
)
def test_bad_settings_are_named_with_file_section_key_and_suggestion(
    tmp_path: Path, text: str, message: str
) -> None:
    config = write(tmp_path, text)
    with pytest.raises(ConfigError) as raised:
        load_settings(config, environ={})
    assert str(raised.value) == message.format(file=config)


@pytest.mark.parametrize(
    ("environ", "overrides", "message"),
    [
        ({"PACSNODE_DICOM_PORT": "x"}, {}, "PACSNODE_DICOM_PORT: 'x' is not an integer"),
        (
            {"PACSNODE_HTTP_AUTH": "ldap"},
            {},
            "PACSNODE_HTTP_AUTH: 'ldap' is not one of 'none', 'basic', 'oauth2'",
        ),
        (
            {},
            {"ae_title": "ABCDEFGHIJKLMNOPQRST"},
            "--ae-title: 'ABCDEFGHIJKLMNOPQRST' is longer than 16 characters",
        ),
    ],
)
def test_bad_variables_and_flags_are_named(
    environ: dict[str, str], overrides: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings(None, overrides, environ)
    assert str(raised.value) == message


def test_lists_come_from_toml_arrays_or_comma_separated_variables(tmp_path: Path) -> None:
    config = tmp_path / "pacsnode.toml"
    config.write_text('[server]\nmpps_destinations = ["RIS", "PACS2"]\n')
    assert load_settings(config, environ={}).mpps_destinations == ("RIS", "PACS2")
    environ = {"PACSNODE_IAN_SUBSCRIBERS": "RIS, VIEWER"}
    assert load_settings(None, environ=environ).ian_subscribers == ("RIS", "VIEWER")


CLUSTER = '[cluster]\nnode = "node-a"\ndatabase_url = "postgresql+psycopg://u:p@db/pacs"\n'


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[cluster]\nnode = "node-a"\n', "{file}: [cluster] needs database_url, storage"),
        (
            CLUSTER.replace("postgresql+psycopg://u:p@db/pacs", "sqlite:///index.sqlite")
            + 'storage = "/srv/pacs"\n',
            "{file}: [cluster] database_url: sqlite is not PostgreSQL: the nodes of a cluster "
            "share one PostgreSQL index (SQLite serves one node only)",
        ),
        (
            CLUSTER + 'storage = "/srv/pacs"\nnod = "x"\n',
            "{file}: [cluster] has no key 'nod' (did you mean 'node'?)",
        ),
        (
            CLUSTER.replace("node-a", "node a") + 'storage = "/srv/pacs"\n',
            "{file}: [cluster] node: 'node a' is not a node name (letters, digits, '.', '_' "
            "and '-', at most 63)",
        ),
        (
            CLUSTER + 'storage = "/srv/pacs"\njob_lease = "long"\n',
            "{file}: [cluster] job_lease: 'long' is not a number",
        ),
        (
            '[server]\ndatabase_url = "postgresql+psycopg://u:p@other/pacs"\n'
            + CLUSTER
            + 'storage = "/srv/pacs"\n',
            "{file}: [cluster]: database_url is also set for the server; a cluster node uses "
            "[cluster] database_url only",
        ),
        ('[clustre]\nnode = "a"\n', "{file}: unknown section [clustre] (did you mean [cluster]?)"),
    ],
)
def test_bad_cluster_sections_are_named(tmp_path: Path, text: str, message: str) -> None:
    config = write(tmp_path, text)
    with pytest.raises(ConfigError) as raised:
        load_settings(config, environ={})
    assert str(raised.value) == message.format(file=config)


def test_a_cluster_node_shares_index_and_storage_and_names_itself(tmp_path: Path) -> None:
    config = write(tmp_path, CLUSTER + 'storage = "/srv/pacs"\n')
    settings = load_settings(config, environ={"PACSNODE_CLUSTER_NODE": "node-b"})
    assert settings.cluster is not None and settings.node_name == "node-b"  # unit file wins
    assert settings.resolved_database_url == "postgresql+psycopg://u:p@db/pacs"
    assert settings.storage_dir == Path("/srv/pacs")
    assert settings.cluster.job_lease == 30.0 and settings.cluster.drain_seconds == 5.0
    single = load_settings(None, environ={})
    assert single.cluster is None and single.storage_dir == single.data_dir
    from_variables = load_settings(
        None,
        environ={
            "PACSNODE_CLUSTER_NODE": "n1",
            "PACSNODE_CLUSTER_DATABASE_URL": "postgresql://db/pacs",
            "PACSNODE_CLUSTER_STORAGE": "/mnt/pacs",
        },
    )
    assert from_variables.cluster is not None and from_variables.node_name == "n1"
    with pytest.raises(ConfigError, match=r"^\[cluster\] needs database_url, storage$"):
        load_settings(None, environ={"PACSNODE_CLUSTER_NODE": "n1"})

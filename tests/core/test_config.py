"""dockyard.toml and its ``DOCKYARD_<SECTION>_<KEY>`` overrides; errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.core.config import ConfigError, load_config

SECRET = "0123456789abcdef-secret"
MINIMAL = f'[webhook]\nsecret = "{SECRET}"\n'


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "dockyard.toml"
    path.write_text(text)
    return path


def test_defaults_and_data_dir_from_the_config_folder(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL), env={})
    assert config.webhook.secret == SECRET
    assert config.webhook.max_body_bytes == 1024 * 1024
    assert config.server.data_dir == tmp_path.resolve()
    # Relative paths in the config live in the data directory, absolute ones stay as they are.
    assert config.path(config.eventlog.path) == tmp_path.resolve() / "events.db"
    assert config.path(Path("/srv/keys/token.key")) == Path("/srv/keys/token.key")


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + "max_body_bytes = 1000\n")
    env = {"DOCKYARD_WEBHOOK_MAX_BODY_BYTES": "4096", "DOCKYARD_SERVER_LISTEN": "127.0.0.2:6000",
           "DOCKYARD_ACTIVITY_RECORD_PULLS": "true", "DOCKYARD_NOT_A_SETTING": "ignored"}
    config = load_config(path, env=env)
    assert config.webhook.max_body_bytes == 4096
    assert (config.server.host, config.server.port) == ("127.0.0.2", 6000)
    assert config.activity.record_pulls is True
    assert config.webhook.secret == SECRET  # untouched keys keep the file's value


def test_the_process_environment_is_read_when_none_is_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKYARD_WEBHOOK_MAX_BODY_BYTES", "2048")
    monkeypatch.setenv("DOCKYARD_WEBHOOK_SECRET", "from-the-environment-0123")
    config = load_config(write(tmp_path, MINIMAL))
    assert config.webhook.max_body_bytes == 2048
    assert config.webhook.secret == "from-the-environment-0123"


def test_an_environment_value_alone_can_supply_a_required_key(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, ""), env={"DOCKYARD_WEBHOOK_SECRET": SECRET})
    assert config.webhook.secret == SECRET


@pytest.mark.parametrize(
    ("toml", "env", "named"),
    [
        (MINIMAL, {"DOCKYARD_WEBHOOK_MAX_BODY_BYTES": "lots"}, "webhook.max_body_bytes:"),
        (MINIMAL, {"DOCKYARD_WEBHOOK_MAX_BODY_BYTES": "0"}, "webhook.max_body_bytes:"),
        (MINIMAL + "max_body_bytes = -5\n", {}, "webhook.max_body_bytes:"),
        (MINIMAL + '[server]\nlisten = "5050"\n', {}, "server.listen:"),
        (MINIMAL + '[log]\nlevel = "chatty"\n', {}, "log.level:"),
        ('[webhook]\nsecret = "short"\n', {}, "webhook.secret:"),
        (MINIMAL, {"DOCKYARD_METRICS_TOKEN": "short"}, "metrics.token:"),
        (MINIMAL, {"DOCKYARD_METRICS_LISTEN": "9102"}, "metrics.listen:"),
        (MINIMAL, {"DOCKYARD_SERVER_TRUSTED_PROXIES": "10.0.0.0/8,proxy.local"},
         "server.trusted_proxies.1:"),
        ("", {}, "webhook: Field required"),
    ],
)
def test_a_bad_value_names_its_key(tmp_path: Path, toml: str, env: dict[str, str],
                                   named: str) -> None:
    with pytest.raises(ConfigError, match=r"^invalid configuration: ") as caught:
        load_config(write(tmp_path, toml), env=env)
    assert named in str(caught.value)


@pytest.mark.parametrize(
    ("toml", "named"),
    [
        (MINIMAL + "max_body_byte = 10\n", "webhook.max_body_byte: unknown key"),
        (MINIMAL + "[sever]\nlisten = '127.0.0.1:1'\n", "sever: unknown key"),
    ],
)
def test_an_unknown_key_is_named(tmp_path: Path, toml: str, named: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, toml), env={})
    assert named in str(caught.value)


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    toml = MINIMAL + "max_body_bytes = 0\ntypo = 1\n"
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, toml), env={})
    assert "webhook.max_body_bytes:" in str(caught.value)
    assert "webhook.typo: unknown key" in str(caught.value)


def test_a_section_that_is_not_a_table(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"webhook: expected a table"):
        load_config(write(tmp_path, "webhook = 5\n"), env={"DOCKYARD_WEBHOOK_SECRET": SECRET})


def test_a_missing_file_says_to_run_init(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "dockyard.toml"
    with pytest.raises(ConfigError, match=r"no such file \(create it with 'dockyard init'\)"):
        load_config(missing, env={})


def test_invalid_toml_says_so(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"not valid TOML"):
        load_config(write(tmp_path, "[webhook\n"), env={})

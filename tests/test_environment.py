"""Every setting from an OSINTD_* environment variable (12-factor), and its place in
precedence: flag, then environment, then config file, then default."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT
from osintd.auth import NamedToken
from osintd.cli import UsageError, build_parser, settings_from
from osintd.config import Settings

#: Long options with no setting behind them. --config has a variable (OSINTD_CONFIG) but
#: names where settings come from: test_osintd_config_names_the_file covers it.
META = {"--help", "--version", "--config"}

#: Every other long option: the text its variable is set to, the Settings attribute it
#: sets, and the value expected there ("{tmp}" is the test's directory). An option added
#: to the parser without a row here fails test_every_option_is_set_by_its_variable:
#: add one (a value other than the default, so the test can fail).
SAMPLES: dict[str, tuple[str, str, object]] = {
    "--host": ("0.0.0.0", "host", "0.0.0.0"),
    "--port": ("9123", "port", 9123),
    "--demo": ("true", "demo", True),
    "--demo-rate": ("12.5", "demo_rate", 12.5),
    "--demo-ramp": ("50:10,200:5", "demo_ramp", ((50.0, 10.0), (200.0, 5.0))),
    "--demo-seed": ("42", "demo_seed", 42),
    "--repo": ("a/one, b/two c/three", "repos", ("a/one", "b/two", "c/three")),
    "--org": ("org-one,org-two", "orgs", ("org-one", "org-two")),
    "--github-api-url": ("https://ghe.example/api/v3/", "github_api_url", "https://ghe.example/api/v3"),
    "--github-token-file": ("{tmp}/token", "github_token", "token-from-file"),
    "--webhook-secret-file": ("{tmp}/secret", "webhook_secret", b"secret-from-file"),
    "--client-tokens-file": ("{tmp}/client-tokens", "client_tokens",
                             (NamedToken("env-client", hashlib.sha256(b"abcdefghijklmnopqrstuvwx").digest()),)),
    "--jwt-secret-file": ("{tmp}/jwt-secret", "jwt_secret", b"jwt-secret-from-file-0123456789abcdef"),
    "--metrics-token-file": ("{tmp}/metrics-token", "metrics_token", "scrape-token-from-file-0123"),
    "--replay": ("{tmp}/hour.json", "replay", Path("{tmp}/hour.json")),
    "--replay-speed": ("2.5", "replay_speed", 2.5),
    "--state-dir": ("{tmp}/state", "state_dir", Path("{tmp}/state")),
    "--reset-state": ("yes", "reset_state", True),
    "--heartbeat-interval": ("7", "heartbeat_interval", 7.0),
    "--metrics-interval": ("3", "metrics_interval", 3.0),
    "--announce-interval": ("2", "announce_interval", 2.0),
    "--summary-interval": ("45", "summary_interval", 45.0),
    "--min-people": ("2", "min_people", 2),
    "--client-queue": ("500", "client_queue", 500),
    "--slow-client-timeout": ("4.5", "slow_client_timeout", 4.5),
    "--max-behind": ("30", "max_behind", 30.0),
    "--replay-capacity": ("20", "replay_capacity", 20),
    "--max-clients": ("77", "max_clients", 77),
    "--public-url": ("https://osint.example.com http://192.0.2.2:8000", "public_urls",
                     ("https://osint.example.com", "http://192.0.2.2:8000")),
    "--forwarded-allow-ips": ("10.0.0.1,192.168.0.0/16", "forwarded_allow_ips", ("10.0.0.1", "192.168.0.0/16")),
    "--allowed-origin": ("https://a.example https://b.example:8443", "allowed_origins",
                         ("https://a.example", "https://b.example:8443")),
    "--log-level": ("WARNING", "log_level", "warning"),
    "--log-format": ("json", "log_format", "json"),
    "--redis": ("redis://10.0.0.5:6379/2", "redis_url", "redis://10.0.0.5:6379/2"),
    "--cluster": ("prod", "cluster", "prod"),
}
#: These two choose the demo, which the sources among the others exclude; a cluster node
#: refuses --state-dir, --replay and webhooks: none of them in the all-at-once test.
DEMO_ONLY = {"--demo", "--demo-ramp", "--redis", "--cluster"}


def _long_options() -> list[str]:
    """Every long option of the real parser, read from the parser itself (not from osintd.environment)."""
    flags = []
    for action in build_parser()._actions:
        flag = next((name for name in action.option_strings if name.startswith("--")), None)
        if flag is not None and flag not in META:
            flags.append(flag)
    return flags


def _variable(flag: str) -> str:
    return "OSINTD_" + flag.removeprefix("--").upper().replace("-", "_")


def _fill(value: object, tmp: Path) -> object:
    if isinstance(value, str):
        return value.replace("{tmp}", str(tmp))
    if isinstance(value, Path):
        return Path(str(value).replace("{tmp}", str(tmp)))
    return value


@pytest.fixture
def files(tmp_path):
    (tmp_path / "token").write_text("token-from-file\n")
    (tmp_path / "secret").write_text("secret-from-file\n")
    (tmp_path / "hour.json").write_text("")
    for name, text in (("client-tokens", "env-client abcdefghijklmnopqrstuvwx\n"),
                       ("jwt-secret", "jwt-secret-from-file-0123456789abcdef\n"),
                       ("metrics-token", "scrape-token-from-file-0123\n")):
        (tmp_path / name).write_text(text)
        (tmp_path / name).chmod(0o600)  # access files readable by everyone are refused
    return tmp_path


def test_every_option_has_a_sample_and_every_sample_an_option():
    assert set(SAMPLES) - set(_long_options()) == set(), "samples for options the parser no longer has"


@pytest.mark.parametrize("flag", _long_options())
def test_every_option_is_set_by_its_variable(flag, files):
    if flag not in SAMPLES:
        pytest.fail(f"{flag} has no sample in SAMPLES: add one (its {_variable(flag)} value and the "
                    "Settings attribute it sets), so that its variable is tested")
    text, attribute, expected = SAMPLES[flag]
    expected = _fill(expected, files)
    assert getattr(Settings(), attribute) != expected, "the sample must differ from the default"
    settings = settings_from([], {_variable(flag): _fill(text, files)})
    assert getattr(settings, attribute) == expected


def test_every_variable_at_once(files):
    environ = {_variable(flag): _fill(text, files) for flag, (text, _, _) in SAMPLES.items() if flag not in DEMO_ONLY}
    settings = settings_from([], environ)
    for flag, (_, attribute, expected) in SAMPLES.items():
        if flag not in DEMO_ONLY:
            assert getattr(settings, attribute) == _fill(expected, files), flag
    assert not settings.runs_demo


def _config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "osintd.toml"
    path.write_text(text)
    return path


def test_flag_beats_environment_beats_file(tmp_path):
    config = _config(tmp_path, 'log_format = "text"\n[server]\nport = 9001\nmax_clients = 11\n'
                               '[github]\nrepos = ["file/repo"]\n')
    environ = {"OSINTD_PORT": "9002", "OSINTD_REPO": "env/one,env/two", "OSINTD_LOG_FORMAT": "json"}
    from_file = settings_from(["--config", str(config)], {})
    assert (from_file.port, from_file.repos, from_file.log_format) == (9001, ("file/repo",), "text")
    from_env = settings_from(["--config", str(config)], environ)
    assert (from_env.port, from_env.repos, from_env.log_format) == (9002, ("env/one", "env/two"), "json")
    assert from_env.max_clients == 11  # what the environment leaves alone still comes from the file
    from_flags = settings_from(["--config", str(config), "--port", "9003", "--repo", "flag/repo",
                                "--log-format", "text"], environ)
    assert (from_flags.port, from_flags.repos, from_flags.log_format) == (9003, ("flag/repo",), "text")
    assert settings_from([], {}).port == 8000 and settings_from([], {}).log_format == "text"


def test_a_switch_turned_off_in_the_environment_beats_the_file_and_a_flag_beats_it(tmp_path):
    config = _config(tmp_path, "[demo]\nenabled = true\n")
    assert settings_from(["--config", str(config)], {}).demo
    assert not settings_from(["--config", str(config)], {"OSINTD_DEMO": "no"}).demo
    assert settings_from(["--config", str(config), "--demo"], {"OSINTD_DEMO": "0"}).demo
    assert settings_from([], {"OSINTD_RESET_STATE": "1"}).reset_state
    assert not settings_from([], {"OSINTD_RESET_STATE": "off"}).reset_state


def test_the_older_variables_still_work_after_their_osintd_ones(tmp_path):
    assert settings_from([], {"DEMO_MODE": "true"}).demo
    assert not settings_from([], {"DEMO_MODE": "true", "OSINTD_DEMO": "false"}).demo
    token = tmp_path / "token"
    token.write_text("from-osintd-variable")
    assert settings_from(["--repo", "a/b"], {"GITHUB_TOKEN": "plain"}).github_token == "plain"
    assert settings_from(["--repo", "a/b"], {"GITHUB_TOKEN": "plain", "OSINTD_GITHUB_TOKEN_FILE": str(token)}
                         ).github_token == "from-osintd-variable"
    flag_token = tmp_path / "flag-token"
    flag_token.write_text("from-flag")
    assert settings_from(["--github-token-file", str(flag_token)], {"OSINTD_GITHUB_TOKEN_FILE": str(token)}
                         ).github_token == "from-flag"
    both = {"STATE_DIRECTORY": str(tmp_path / "systemd"), "OSINTD_STATE_DIR": str(tmp_path / "mine")}
    assert settings_from([], both).state_dir == tmp_path / "mine"
    assert settings_from([], {"STATE_DIRECTORY": str(tmp_path / "systemd")}).state_dir == tmp_path / "systemd"


def test_osintd_config_names_the_file_and_config_beats_it(tmp_path):
    first = tmp_path / "first.toml"
    first.write_text("[server]\nport = 9101\n")
    second = tmp_path / "second.toml"
    second.write_text("[server]\nport = 9102\n")
    assert settings_from([], {"OSINTD_CONFIG": str(first)}).port == 9101
    assert settings_from(["--config", str(second)], {"OSINTD_CONFIG": str(first)}).port == 9102


def test_an_empty_variable_is_unset(tmp_path):
    config = _config(tmp_path, "[server]\nport = 9001\n")
    assert settings_from(["--config", str(config)], {"OSINTD_PORT": "", "OSINTD_REPO": " "}).port == 9001


@pytest.mark.parametrize("environ, complaint", [
    ({"OSINTD_PORT": "http"}, "environment variable OSINTD_PORT: argument --port: 'http' is not a port number"),
    ({"OSINTD_PORT": "-5"}, "OSINTD_PORT: argument --port: -5 is out of range"),
    ({"OSINTD_DEMO": "maybe"}, "OSINTD_DEMO: 'maybe' is neither true nor false"),
    ({"OSINTD_LOG_FORMAT": "xml"}, "OSINTD_LOG_FORMAT: argument --log-format: invalid choice: 'xml'"),
    ({"OSINTD_REPO": "a/b not-a-repo"}, "OSINTD_REPO: argument --repo: 'not-a-repo' is not OWNER/NAME"),
    ({"OSINTD_GITHUB_TOKEN_FILE": "/nonexistent/token"}, "cannot read OSINTD_GITHUB_TOKEN_FILE /nonexistent/token"),
    ({"OSINTD_CONFIG": "/nonexistent.toml"}, "cannot read config file /nonexistent.toml"),
])
def test_a_bad_variable_is_one_line_naming_it_and_exit_2(environ, complaint):
    with pytest.raises(UsageError):
        settings_from([], environ)
    result = subprocess.run([sys.executable, "-m", "osintd"], capture_output=True, text=True, timeout=20, cwd=ROOT,
                            env={**os.environ, **environ})
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert len(lines) == 1 and lines[0].startswith("osintd: error:") and complaint in lines[0], lines

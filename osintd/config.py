"""Settings: every knob of the daemon in one frozen attrs class.

Owns: the settings' names, defaults and validation.
Must not: parse the command line (``cli``) or act on a setting.
Secrets (the GitHub token, the webhook secret, client and scrape tokens, the JWT key)
are kept out of ``repr``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import attrs

if TYPE_CHECKING:
    from osintd.auth import NamedToken


@attrs.frozen
class Settings:
    host: str = "127.0.0.1"
    port: int = 8000
    demo: bool = False
    demo_rate: float = 4.0
    demo_seed: int | None = None
    #: (events per second, seconds) steps the demo runs through before ``demo_rate`` holds.
    demo_ramp: tuple[tuple[float, float], ...] = ()
    # GitHub sources: polled repositories and organisations, webhooks, replay.
    repos: tuple[str, ...] = ()
    orgs: tuple[str, ...] = ()
    github_api_url: str = "https://api.github.com"
    github_token: str | None = attrs.field(default=None, repr=False)
    webhook_secret: bytes | None = attrs.field(default=None, repr=False)
    replay: Path | None = None
    replay_speed: float | None = None  # None: as fast as the pipeline goes
    #: Where the state file lives; None keeps everything in memory.
    state_dir: Path | None = None
    reset_state: bool = False
    heartbeat_interval: float = 30.0
    metrics_interval: float = 5.0
    #: A client is dropped when this many messages wait for it (a memory bound: queued
    #: frames are shared, a pointer each) ...
    client_queue: int = 100_000
    #: ... or when the oldest message waiting for it is this many seconds old.
    slow_client_timeout: float = 10.0
    #: ... or when it has been behind this many seconds without once catching up.
    max_behind: float = 60.0
    max_clients: int = 10_000
    allowed_origins: tuple[str, ...] = ()
    #: The addresses people use to reach osintd (``https://osint.example.com``), behind a proxy or not.
    public_urls: tuple[str, ...] = ()
    #: Peers (addresses, networks, or "*") whose X-Forwarded-For/-Proto/-Host headers are believed.
    forwarded_allow_ips: tuple[str, ...] = ()
    # Access control (``auth``): named client tokens, the HS256 key of client JWTs, the /metrics scrape token.
    client_tokens: tuple[NamedToken, ...] = attrs.field(default=(), repr=False)
    jwt_secret: bytes | None = attrs.field(default=None, repr=False)
    metrics_token: str | None = attrs.field(default=None, repr=False)
    log_level: str = "info"
    log_format: str = "text"
    #: Seconds between scoreboards: ranking, trend and summary announcements are coalesced to this rate.
    announce_interval: float = 1.0
    #: Minimum seconds between two summary_update messages of one repository.
    summary_interval: float = 30.0
    #: Distinct people a repository needs in the window to be ranked in the Top 30 and to have a trend.
    min_people: int = 3
    replay_capacity: int = 10_000
    #: Items the sources may queue ahead of the scorer; an item is one event or a batch of up to 64.
    event_queue: int = 8
    ping_interval: float = 20.0
    ping_timeout: float = 10.0
    send_timeout: float = 10.0
    handshake_timeout: float = 10.0
    shutdown_grace: float = 3.0
    #: ``--redis``: the Redis that holds the cluster's lease, stream and state (``cluster``);
    #: None runs one node alone.  Out of ``repr``: a URL may carry a password.
    redis_url: str | None = attrs.field(default=None, repr=False)
    #: ``--cluster``: the name of the cluster in that Redis (the prefix of its keys).
    cluster: str = "osintd"

    @property
    def uses_github(self) -> bool:
        return bool(self.repos or self.orgs or self.webhook_secret or self.replay)

    @property
    def runs_demo(self) -> bool:
        """Demo when asked for, or when no GitHub source is configured."""
        return self.demo or not self.uses_github


# ------------------------------------------------------------------ config file
#
# The TOML file (``--config``) mirrors the flags in sections.  It is structured
# by cattrs into these classes: an unknown key or a wrong type is refused with
# the key's path ("server.port: expected int"), never ignored.


@attrs.frozen
class ServerSection:
    host: str | None = None
    port: int | None = None
    max_clients: int | None = None
    client_queue: int | None = None
    slow_client_timeout: float | None = None
    max_behind: float | None = None
    replay_capacity: int | None = None
    allowed_origins: list[str] | None = None
    public_urls: list[str] | None = None
    forwarded_allow_ips: list[str] | None = None
    heartbeat_interval: float | None = None
    metrics_interval: float | None = None
    announce_interval: float | None = None
    summary_interval: float | None = None
    min_people: int | None = None


@attrs.frozen
class GitHubSection:
    repos: list[str] | None = None
    orgs: list[str] | None = None
    api_url: str | None = None
    token_file: str | None = None
    webhook_secret_file: str | None = None


@attrs.frozen
class AuthSection:
    client_tokens_file: str | None = None
    jwt_secret_file: str | None = None
    metrics_token_file: str | None = None


@attrs.frozen
class DemoSection:
    enabled: bool | None = None
    rate: float | None = None
    seed: int | None = None


@attrs.frozen
class ReplaySection:
    file: str | None = None
    speed: float | str | None = None


@attrs.frozen
class ClusterSection:
    redis: str | None = None
    name: str | None = None


@attrs.frozen
class FileConfig:
    log_level: str | None = None
    log_format: str | None = None
    state_dir: str | None = None
    server: ServerSection = ServerSection()
    github: GitHubSection = GitHubSection()
    auth: AuthSection = AuthSection()
    demo: DemoSection = DemoSection()
    replay: ReplaySection = ReplaySection()
    cluster: ClusterSection = ClusterSection()


class ConfigError(ValueError):
    """A config file osintd cannot use; the message names the file and the key."""


def load_config(path: Path) -> FileConfig:
    import tomllib

    import cattrs

    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    converter = cattrs.Converter(forbid_extra_keys=True)

    def strict(kind: type | tuple[type, ...]) -> Callable[[object, object], object]:
        def check(value: object, _type: object) -> object:
            if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
                raise TypeError(f"expected {kind.__name__ if isinstance(kind, type) else 'a number'}")
            return value
        return check

    converter.register_structure_hook(str, strict(str))
    converter.register_structure_hook(int, strict(int))
    converter.register_structure_hook(bool, strict(bool))
    converter.register_structure_hook(float, strict((int, float)))
    converter.register_structure_hook_func(  # replay.speed: a number or "max"
        lambda cls: cls == (float | str | None),
        lambda value, _t: None if value is None else strict((int, float, str))(value, _t))
    try:
        return converter.structure(raw, FileConfig)
    except Exception as exc:  # cattrs raises class/iterable validation groups
        problems = []
        for line in cattrs.transform_error(exc, path="$"):
            message, _, where = line.rpartition(" @ ")
            problems.append(f"{where.removeprefix('$').removeprefix('.') or '(top level)'}: {message}")
        raise ConfigError(f"config file {path}: {'; '.join(problems)}") from None

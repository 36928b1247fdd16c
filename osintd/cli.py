"""The command line: ``osintd [flags]`` serves; ``osintd watch`` is the terminal client.

Owns: flags, environment variables, the config file's place in precedence
(flag, then environment, then file, then default), reading secret files,
signals, and exit codes (0 after a clean stop, 1 when serving failed, 2 for a
bad value: one line on stderr, never a traceback).
Must not: contain daemon logic.

Config-file values and ``OSINTD_*`` variables (``environment``: one for every
long option, by its name) go through the same parser as flags, so all three
are validated alike and a bad value names where it came from.
"""

from __future__ import annotations

import argparse
import gc
import logging
import math
import os
import re
import resource
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import trio

from osintd import __version__, environment, logs
from osintd.config import ConfigError, FileConfig, Settings, load_config
from osintd.proxy import AddressError, Origin, TrustedProxies, public_url
from osintd.store import StateError

log = logging.getLogger("osintd")

TRUE = {"1", "true", "yes", "on"}
FALSE = {"0", "false", "no", "off", ""}
_REPO = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
_ORG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]*$")


class UsageError(Exception):
    """A bad value: one line for the user, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


_Number = TypeVar("_Number", int, float)
_Exception = TypeVar("_Exception", bound=BaseException)


def _ranged(kind: Callable[[str], _Number], low: float, high: float, what: str) -> Callable[[str], _Number]:
    def parse(text: str) -> _Number:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text} is out of range: use {what} from {low:g} to {high:g}")
        return value
    return parse


def _ramp(text: str) -> tuple[tuple[float, float], ...]:
    rate, seconds = _ranged(float, 0.1, 100_000, "events per second"), _ranged(float, 0.1, 86_400, "seconds")
    steps = []
    for step in text.split(","):
        parts = step.strip().split(":")
        if len(parts) != 2:
            raise argparse.ArgumentTypeError(f"{step!r} is not RATE:SECONDS (e.g. 200:10)")
        steps.append((rate(parts[0]), seconds(parts[1])))
    return tuple(steps)


def _matching(pattern: re.Pattern[str], what: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if not pattern.match(text):
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
        return text
    return parse


def _origin(text: str) -> str:
    if text == "*":
        return text
    if not text.startswith(("http://", "https://")) or text.count("/") != 2 or Origin.parse(text) is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not an origin like http://example.com:8080 (or *)")
    return text.rstrip("/")


def _public_url(text: str) -> str:
    try:
        return str(public_url(text))
    except AddressError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _proxy_addresses(text: str) -> list[str]:
    items = [item.strip() for item in text.split(",") if item.strip()]
    try:
        TrustedProxies.parse(items)
    except AddressError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if not items:
        raise argparse.ArgumentTypeError("name at least one proxy address (e.g. 127.0.0.1)")
    return items


def _url(text: str) -> str:
    if not text.startswith(("http://", "https://")):
        raise argparse.ArgumentTypeError(f"{text!r} is not an http(s) URL")
    return text.rstrip("/")


_CLUSTER = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def _redis_url(text: str) -> str:
    if not text.startswith(("redis://", "rediss://", "unix://")):
        raise argparse.ArgumentTypeError("expected redis://HOST:PORT/DB (or rediss://, unix://)")
    return text


def _speed(text: str) -> float:
    """A speed-up factor; "max" is infinity here (as fast as the pipeline goes), so that it is
    a value, which wins over a config file's speed, not an unset flag."""
    if text == "max":
        return math.inf
    return _ranged(float, 0.001, 1e9, "a speed-up factor (or max)")(text)


def build_parser() -> argparse.ArgumentParser:
    # Defaults are None here: Settings holds the real ones, so that precedence can tell set from unset.
    p = _Parser(prog="osintd", argument_default=None,
                description="Live GitHub activity intelligence over WebSocket (ws://HOST:PORT/ws/live-updates).",
                epilog="Every option is also an environment variable: --foo-bar is OSINTD_FOO_BAR (repeatable "
                       "options take a list separated by commas or spaces; switches true or false). Precedence: "
                       "flag, then environment, then config file, then default.")
    p.add_argument("--version", action="version", version=f"osintd {__version__}")
    p.add_argument("--config", type=Path, metavar="FILE", help="TOML config file (flags and environment win over it)")
    p.add_argument("--host", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=_ranged(int, 0, 65535, "a port number"),
                   help="port for HTTP and WebSocket (default 8000; 0 picks a free one)")
    p.add_argument("--demo", action="store_true", help="synthetic activity, no token or network (also "
                   "DEMO_MODE=true; the default while no GitHub source is configured)")
    p.add_argument("--demo-rate", type=_ranged(float, 0.1, 100_000, "events per second"),
                   help="demo events per second (0.1 to thousands; default 4)")
    p.add_argument("--demo-ramp", type=_ramp, metavar="RATE:SECONDS,...",
                   help="demo rate in steps, then --demo-rate (or the last step) holds: e.g. "
                        "50:10,200:10,800:10 to watch the server shed under overload")
    p.add_argument("--demo-seed", type=_ranged(int, 0, 2**63 - 1, "a whole number"),
                   help="seed for reproducible demo data")
    p.add_argument("--repo", action="append", type=_matching(_REPO, "OWNER/NAME"), metavar="OWNER/NAME",
                   help="poll this repository's events (repeatable)")
    p.add_argument("--org", action="append", type=_matching(_ORG, "an organisation name"), metavar="ORG",
                   help="poll this organisation's public events (repeatable)")
    p.add_argument("--github-api-url", type=_url, help="GitHub API base URL (default https://api.github.com)")
    p.add_argument("--github-token-file", type=Path, metavar="FILE",
                   help="file holding a GitHub token (also GITHUB_TOKEN, or $CREDENTIALS_DIRECTORY/github-token)")
    p.add_argument("--webhook-secret-file", type=Path, metavar="FILE",
                   help="file holding the webhook secret; enables POST /webhooks/github "
                        "(also $CREDENTIALS_DIRECTORY/webhook-secret)")
    p.add_argument("--replay", type=Path, metavar="FILE",
                   help="replay a GH Archive file (.json or .json.gz, one event per line)")
    p.add_argument("--replay-speed", type=_speed, metavar="N|max",
                   help="replay N times faster than the events happened, or max (default)")
    p.add_argument("--state-dir", type=Path, metavar="DIR",
                   help="keep state (history, seq, scores, poll cursors) in DIR across restarts "
                        "(also $STATE_DIRECTORY; default: in memory only)")
    p.add_argument("--reset-state", action="store_true",
                   help="start with empty state on purpose (history and seq are lost; clients resync)")
    p.add_argument("--heartbeat-interval", type=_ranged(float, 0.05, 3600, "seconds"),
                   help="seconds between heartbeats (default 30)")
    p.add_argument("--metrics-interval", type=_ranged(float, 0.05, 3600, "seconds"),
                   help="seconds between metrics checks; sent only when changed (default 5)")
    p.add_argument("--announce-interval", type=_ranged(float, 0.05, 3600, "seconds"),
                   help="seconds between ranking/trend/summary announcements (default 1)")
    p.add_argument("--summary-interval", type=_ranged(float, 0, 86400, "seconds"),
                   help="minimum seconds between summaries of one repository (default 30; 10 in demo)")
    p.add_argument("--min-people", type=_ranged(int, 1, 1000, "a count of people"),
                   help="distinct people a repository needs in the window to be ranked and have a trend "
                        "(default 3; 1 for a few repositories of a small team)")
    p.add_argument("--client-queue", type=_ranged(int, 4, 10_000_000, "a message count"),
                   help="messages waiting for one client before it is dropped as slow (default 100000)")
    p.add_argument("--slow-client-timeout", type=_ranged(float, 0.1, 3600, "seconds"),
                   help="a client whose socket takes nothing for this long while messages wait for it "
                        "is dropped as slow (default 10)")
    p.add_argument("--max-behind", type=_ranged(float, 0.1, 86400, "seconds"),
                   help="a client behind for this long without once catching up is dropped as slow (default 60)")
    p.add_argument("--replay-capacity", type=_ranged(int, 0, 10_000_000, "a message count"),
                   help="broadcasts kept for clients that resume (default 10000)")
    p.add_argument("--max-clients", type=_ranged(int, 1, 1_000_000, "a client count"),
                   help="WebSocket clients at once; the next one gets 503 (default 10000)")
    p.add_argument("--public-url", type=_public_url, action="append", metavar="URL",
                   help="an address people use to open osintd, e.g. https://osint.example.com behind a TLS "
                        "proxy (repeatable): its host is answered for and its pages may connect")
    p.add_argument("--allowed-origin", type=_origin, action="append", metavar="ORIGIN",
                   help="another site whose pages may open the WebSocket, repeatable; its host is also "
                        "answered for; * allows any origin (pages served by osintd itself always may)")
    p.add_argument("--forwarded-allow-ips", type=_proxy_addresses, action="extend", metavar="IP[,IP...]",
                   help="proxies (addresses or networks, or *) whose X-Forwarded-For, -Proto and -Host "
                        "headers are believed: the client's address in logs, https for the Origin check "
                        "(default: none)")
    p.add_argument("--client-tokens-file", type=Path, metavar="FILE",
                   help="turns on access control: clients need a token, one 'NAME TOKEN [types=T,T] "
                        "[repos=GLOB,GLOB]' a line (also $CREDENTIALS_DIRECTORY/client-tokens)")
    p.add_argument("--jwt-secret-file", type=Path, metavar="FILE",
                   help="turns on access control: clients may present HS256 JWTs signed with this key "
                        "(exp required; also $CREDENTIALS_DIRECTORY/jwt-secret)")
    p.add_argument("--metrics-token-file", type=Path, metavar="FILE",
                   help="file holding the token Prometheus presents for /metrics (Bearer); without one, "
                        "/metrics is refused while access control is on (also $CREDENTIALS_DIRECTORY/metrics-token)")
    p.add_argument("--log-level", choices=("debug", "info", "warning", "error"), type=str.lower)
    p.add_argument("--log-format", choices=logs.FORMATS, type=str.lower,
                   help="text (default: one line, for a terminal or journald) or json (one object per line)")
    p.add_argument("--redis", type=_redis_url, metavar="redis://HOST:PORT/DB",
                   help="join a cluster of nodes through this Redis (see README, Beyond one machine)")
    p.add_argument("--cluster", type=_matching(_CLUSTER, "a cluster name (letters, digits, . _ -)"),
                   metavar="NAME", help="the cluster's name in that Redis (default osintd)")
    return p


def _file_argv(config: FileConfig) -> list[str]:
    """The config file as flags, so that it is validated exactly like them."""
    argv: list[str] = []

    def add(flag: str, value: object) -> None:
        if value is None:
            return
        if isinstance(value, list):
            for item in value:
                argv.extend((flag, str(item)))
        elif isinstance(value, bool):
            if value:
                argv.append(flag)
        else:
            argv.extend((flag, str(value)))

    s, g, d, r, a, c = config.server, config.github, config.demo, config.replay, config.auth, config.cluster
    for flag, value in (("--log-level", config.log_level), ("--log-format", config.log_format),
                        ("--state-dir", config.state_dir),
                        ("--host", s.host), ("--port", s.port),
                        ("--max-clients", s.max_clients), ("--client-queue", s.client_queue),
                        ("--slow-client-timeout", s.slow_client_timeout), ("--max-behind", s.max_behind),
                        ("--replay-capacity", s.replay_capacity), ("--allowed-origin", s.allowed_origins),
                        ("--public-url", s.public_urls), ("--forwarded-allow-ips", s.forwarded_allow_ips),
                        ("--heartbeat-interval", s.heartbeat_interval), ("--metrics-interval", s.metrics_interval),
                        ("--announce-interval", s.announce_interval), ("--summary-interval", s.summary_interval),
                        ("--min-people", s.min_people),
                        ("--repo", g.repos), ("--org", g.orgs), ("--github-api-url", g.api_url),
                        ("--github-token-file", g.token_file), ("--webhook-secret-file", g.webhook_secret_file),
                        ("--client-tokens-file", a.client_tokens_file), ("--jwt-secret-file", a.jwt_secret_file),
                        ("--metrics-token-file", a.metrics_token_file),
                        ("--demo", d.enabled), ("--demo-rate", d.rate), ("--demo-seed", d.seed),
                        ("--replay", r.file), ("--replay-speed", r.speed),
                        ("--redis", c.redis), ("--cluster", c.name)):
        add(flag, value)
    return argv


def _finite(speed: float | None) -> float | None:
    """Settings' replay speed: None for "max"."""
    return None if speed is None or math.isinf(speed) else speed


def _read_secret(path: Path, what: str) -> str:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise UsageError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise UsageError(f"{what} {path} is not text") from None
    if not text:
        raise UsageError(f"{what} {path} is empty")
    return text


def _from_environment(parser: argparse.ArgumentParser, environ: dict[str, str]) -> argparse.Namespace:
    """The options set by ``OSINTD_*`` variables, each parsed like its flag; the others are absent."""
    found = argparse.Namespace()
    for option in environment.options(parser):
        text = environment.present(option, environ)
        if text is None:
            continue
        try:
            arguments = option.arguments(text)
            if isinstance(arguments, bool):  # a switch: on, or explicitly off (which beats the file)
                value = option.on if arguments else not option.on
            else:
                value = getattr(parser.parse_args(arguments), option.dest)
        except (environment.BadValue, UsageError) as exc:
            raise UsageError(f"environment variable {option.variable}: {exc}") from None
        if value is not None:
            setattr(found, option.dest, value)
    return found


def settings_from(argv: Sequence[str], environ: dict[str, str]) -> Settings:
    """Flags first, then the environment, then the config file, then defaults."""
    parser = build_parser()
    # A switch left off is "not given" (None), so that the environment and the file can still set it.
    parser.set_defaults(**{option.dest: None for option in environment.options(parser) if option.kind == "switch"})
    flags = parser.parse_args(argv)
    env = _from_environment(parser, environ)
    file = argparse.Namespace()
    config = flags.config if flags.config is not None else getattr(env, "config", None)
    if config is not None:
        try:
            file_argv = _file_argv(load_config(config))
        except ConfigError as exc:
            raise UsageError(str(exc)) from None
        try:
            file = parser.parse_args(file_argv)
        except UsageError as exc:
            raise UsageError(f"config file {config}: {exc}") from None

    def pick(name: str, legacy: str | None = None, convert: Callable[[str], Any] = lambda v: v) -> Any:
        """A setting from the first layer that has it; ``legacy`` names an older variable
        (not OSINTD_*) that still counts as the environment, after the OSINTD_ one."""
        for layer in (flags, env):
            value = getattr(layer, name, None)
            if value is not None:
                return value
        if legacy is not None and environ.get(legacy):
            return convert(environ[legacy])
        return getattr(file, name, None)

    demo_env = environ.get("DEMO_MODE")
    if demo_env is not None and demo_env.strip().lower() not in TRUE | FALSE:
        raise UsageError(f"DEMO_MODE={demo_env!r} is not true or false")
    if flags.demo is not None or getattr(env, "demo", None) is not None:
        demo = bool(pick("demo"))
    else:
        demo = (demo_env.strip().lower() in TRUE if demo_env is not None
                else bool(getattr(file, "demo", None)))

    token = None
    if flags.github_token_file is not None:
        token = _read_secret(flags.github_token_file, "--github-token-file")
    elif getattr(env, "github_token_file", None) is not None:
        token = _read_secret(env.github_token_file, "OSINTD_GITHUB_TOKEN_FILE")
    elif environ.get("GITHUB_TOKEN"):
        token = environ["GITHUB_TOKEN"].strip()
    elif getattr(file, "github_token_file", None) is not None:
        token = _read_secret(file.github_token_file, "github.token_file")
    elif environ.get("CREDENTIALS_DIRECTORY") and (Path(environ["CREDENTIALS_DIRECTORY"]) / "github-token").exists():
        token = _read_secret(Path(environ["CREDENTIALS_DIRECTORY"]) / "github-token", "credential")

    secret_file = pick("webhook_secret_file")
    if secret_file is None and environ.get("CREDENTIALS_DIRECTORY"):
        candidate = Path(environ["CREDENTIALS_DIRECTORY"]) / "webhook-secret"
        secret_file = candidate if candidate.exists() else None
    secret = _read_secret(secret_file, "webhook secret file").encode() if secret_file is not None else None

    access = _access_files(pick, environ)

    replay = pick("replay")
    if replay is not None and not replay.is_file():
        raise UsageError(f"--replay {replay}: no such file")
    repos, orgs = tuple(pick("repo") or ()), tuple(pick("org") or ())
    if demo and (repos or orgs or replay):
        raise UsageError("--demo cannot be combined with --repo, --org or --replay; choose one")

    defaults = Settings()
    values = {
        "host": pick("host"), "port": pick("port"), "demo_rate": pick("demo_rate"),
        "demo_seed": pick("demo_seed"), "demo_ramp": pick("demo_ramp"), "github_api_url": pick("github_api_url"),
        "heartbeat_interval": pick("heartbeat_interval"), "metrics_interval": pick("metrics_interval"),
        "announce_interval": pick("announce_interval"), "client_queue": pick("client_queue"),
        "slow_client_timeout": pick("slow_client_timeout"), "max_behind": pick("max_behind"),
        "replay_capacity": pick("replay_capacity"), "max_clients": pick("max_clients"),
        "log_level": pick("log_level"), "log_format": pick("log_format"), "min_people": pick("min_people"),
    }
    summary_interval = pick("summary_interval")
    runs_demo = demo or not (repos or orgs or replay or secret)
    if pick("demo_ramp") and not runs_demo:
        raise UsageError("--demo-ramp only applies to the demo; add --demo (without --repo, --org or --replay)")
    state_dir = pick("state_dir", "STATE_DIRECTORY", lambda value: Path(value.split(":")[0]))
    redis_url, cluster = pick("redis"), pick("cluster")
    if redis_url is not None and any(getattr(layer, "state_dir", None) is not None for layer in (flags, env, file)):
        raise UsageError("--redis keeps the state in Redis; drop --state-dir (a node of a cluster has no state file)")
    if redis_url is not None and replay is not None:
        raise UsageError("--redis needs live sources (--demo, --repo, --org, webhooks), not --replay")
    return Settings(
        **{name: value for name, value in values.items() if value is not None},
        demo=demo, repos=repos, orgs=orgs, github_token=token, webhook_secret=secret, replay=replay,
        replay_speed=_finite(pick("replay_speed")), state_dir=None if redis_url else state_dir,
        reset_state=bool(pick("reset_state")),
        summary_interval=summary_interval if summary_interval is not None
        else (10.0 if runs_demo else defaults.summary_interval),
        allowed_origins=tuple(pick("allowed_origin") or ()),
        public_urls=tuple(dict.fromkeys(pick("public_url") or ())),
        forwarded_allow_ips=tuple(pick("forwarded_allow_ips") or ()), **access,
        redis_url=redis_url, **({"cluster": cluster} if cluster is not None else {}),
    )


def _access_files(pick: Callable[[str], Any], environ: dict[str, str]) -> dict[str, Any]:
    """The access settings from their files (a flag, the config file, or a systemd credential
    of the same name), each read and checked now: a bad one stops start-up with one line."""
    from osintd import auth

    def path(name: str, credential: str) -> Path | None:
        chosen: Path | None = pick(name)
        if chosen is None and environ.get("CREDENTIALS_DIRECTORY"):
            candidate = Path(environ["CREDENTIALS_DIRECTORY"]) / credential
            chosen = candidate if candidate.exists() else None
        return chosen

    tokens, secret, scrape = (path("client_tokens_file", "client-tokens"), path("jwt_secret_file", "jwt-secret"),
                              path("metrics_token_file", "metrics-token"))
    try:
        return {"client_tokens": auth.read_tokens_file(tokens) if tokens is not None else (),
                "jwt_secret": auth.read_jwt_secret(secret) if secret is not None else None,
                "metrics_token": auth.read_metrics_token(scrape) if scrape is not None else None}
    except auth.AccessFileError as exc:
        raise UsageError(str(exc)) from None


#: Descriptors beyond one per client: listeners, the state file, GitHub, webhooks, logs.
SPARE_FILES = 256


def raise_open_file_limit(max_clients: int) -> int:
    """Raise the soft open-file limit to what ``--max-clients`` needs (up to the hard limit);
    the limit in force.  Warns when it stays below the need: the next clients would find
    accept() failing, not a clear 503."""
    needed = max_clients + SPARE_FILES
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return soft
    target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    except (ValueError, OSError) as exc:
        log.debug("could not raise the open-file limit: %s", exc)
    if soft < needed:
        log.warning("open-file limit %d is below the %d that --max-clients %d needs; raise it "
                    "(LimitNOFILE= under systemd, ulimit -n in a shell) or lower --max-clients",
                    soft, needed, max_clients)
    return soft


async def serve(settings: Settings) -> None:
    from osintd.app import App  # imported here so that --help stays fast

    raise_open_file_limit(settings.max_clients)
    # Past a file-size limit (LimitFSIZE=, ulimit -f) a write fails with EFBIG, which the
    # state store reports as degraded health and recovers from; the signal would kill us.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        app = App(settings)
        async with trio.open_nursery() as nursery:
            await nursery.start(app.run)
            _tune_gc()
            async for signum in signals:
                log.info("received %s", signal.Signals(signum).name)
                break
            await app.shutdown()
            nursery.cancel_scope.cancel()
    log.info("stopped")


def _tune_gc() -> None:
    """Keep the cyclic garbage collector out of the broadcast path.

    Everything allocated during start-up is long-lived: freeze it, so that
    collections never walk it again; and collect the young generation far
    less often, because a fan-out allocates many short-lived objects (no
    cycles) per message.  At thousands of clients the default thresholds made
    the collector most of the CPU time in prototypes."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["watch"]:  # the terminal client: ``osintd watch [--url] [--types] [--repos] [--json]``
        from osintd.watch import main as watch_main
        return watch_main(argv[1:])
    try:
        settings = settings_from(argv, dict(os.environ))
    except UsageError as exc:
        print(f"osintd: error: {exc}", file=sys.stderr)
        return 2
    logs.configure(settings.log_level, settings.log_format)
    for name in environment.unknown(build_parser(), os.environ):
        log.warning("environment variable %s stands for no option of osintd; ignored", name)
    try:
        trio.run(serve, settings)
    except Exception as exc:
        state_error = _first(exc, StateError)
        if state_error is not None:
            print(f"osintd: error: {state_error}", file=sys.stderr)
            return 1
        bind_error = _first(exc, OSError)
        if bind_error is None:
            raise
        print(f"osintd: error: cannot serve on {settings.host}:{settings.port}: "
              f"{bind_error.strerror or bind_error}", file=sys.stderr)
        return 1
    return 0


def _first(exc: BaseException, kind: type[_Exception]) -> _Exception | None:
    """The first ``kind`` in ``exc``, looking inside exception groups (trio nurseries raise those)."""
    if isinstance(exc, kind):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            if (found := _first(inner, kind)) is not None:
                return found
    return None

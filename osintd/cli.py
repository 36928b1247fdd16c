"""The command line: ``osintd [flags]`` serves.

Owns: flags, environment variables, turning them into :class:`Settings`,
signals, and exit codes (0 after a clean stop, 1 when serving failed, 2 for a
bad value: one line on stderr, never a traceback).
Must not: contain daemon logic.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from typing import Callable, NoReturn, Sequence

import trio

from osintd import __version__, logs
from osintd.config import Settings

log = logging.getLogger("osintd")

TRUE = {"1", "true", "yes", "on"}
FALSE = {"0", "false", "no", "off", ""}


class UsageError(Exception):
    """A bad value: one line for the user, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def _ranged(kind: Callable, low: float, high: float, what: str) -> Callable[[str], object]:
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text} is out of range: use {what} from {low:g} to {high:g}")
        return value
    return parse


def _origin(text: str) -> str:
    if text == "*":
        return text
    if not text.startswith(("http://", "https://")) or text.count("/") != 2:
        raise argparse.ArgumentTypeError(f"{text!r} is not an origin like http://example.com:8080 (or *)")
    return text.rstrip("/")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="osintd", description="Live GitHub activity intelligence over WebSocket "
                                          "(ws://HOST:PORT/ws/live-updates).")
    p.add_argument("--version", action="version", version=f"osintd {__version__}")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=_ranged(int, 0, 65535, "a port number"), default=8000,
                   help="port for HTTP and WebSocket (default 8000; 0 picks a free one)")
    p.add_argument("--demo", action="store_true", default=None,
                   help="synthetic activity, no token or network (also DEMO_MODE=true; the default "
                        "while no GitHub source is configured)")
    p.add_argument("--demo-rate", type=_ranged(float, 0.1, 100_000, "events per second"), default=4.0,
                   help="demo events per second (0.1 to thousands; default 4)")
    p.add_argument("--demo-seed", type=_ranged(int, 0, 2**63 - 1, "a whole number"), default=None,
                   help="seed for reproducible demo data")
    p.add_argument("--heartbeat-interval", type=_ranged(float, 0.05, 3600, "seconds"), default=30.0,
                   help="seconds between heartbeats (default 30)")
    p.add_argument("--metrics-interval", type=_ranged(float, 0.05, 3600, "seconds"), default=5.0,
                   help="seconds between metrics checks; sent only when changed (default 5)")
    p.add_argument("--announce-interval", type=_ranged(float, 0.05, 3600, "seconds"), default=1.0,
                   help="seconds between ranking/trend/summary announcements (default 1)")
    p.add_argument("--summary-interval", type=_ranged(float, 0, 86400, "seconds"), default=None,
                   help="minimum seconds between summaries of one repository (default 30; 10 in demo)")
    p.add_argument("--client-queue", type=_ranged(int, 4, 1_000_000, "a message count"), default=1024,
                   help="messages queued per client before it is dropped as slow (default 1024)")
    p.add_argument("--replay-capacity", type=_ranged(int, 0, 10_000_000, "a message count"), default=10_000,
                   help="broadcasts kept for clients that resume (default 10000)")
    p.add_argument("--max-clients", type=_ranged(int, 1, 1_000_000, "a client count"), default=10_000,
                   help="WebSocket clients at once; the next one gets 503 (default 10000)")
    p.add_argument("--allowed-origin", type=_origin, action="append", default=[], metavar="ORIGIN",
                   help="browser origin allowed to connect, repeatable; * allows any "
                        "(default: this server on localhost, 127.0.0.1 and [::1])")
    p.add_argument("--log-level", choices=("debug", "info", "warning", "error"), default="info",
                   type=str.lower)
    return p


def settings_from(argv: Sequence[str], environ: dict[str, str]) -> Settings:
    """Flags first, then the environment, then defaults."""
    args = build_parser().parse_args(argv)
    demo = args.demo
    if demo is None and "DEMO_MODE" in environ:
        value = environ["DEMO_MODE"].strip().lower()
        if value not in TRUE | FALSE:
            raise UsageError(f"DEMO_MODE={environ['DEMO_MODE']!r} is not true or false")
        demo = value in TRUE
    if demo is False:
        raise UsageError("no source configured: the GitHub sources are not available yet; run with --demo")
    summary_interval = args.summary_interval if args.summary_interval is not None else 10.0
    return Settings(
        host=args.host, port=args.port, demo=True, demo_rate=args.demo_rate, demo_seed=args.demo_seed,
        heartbeat_interval=args.heartbeat_interval, metrics_interval=args.metrics_interval,
        announce_interval=args.announce_interval, summary_interval=summary_interval,
        client_queue=args.client_queue, max_clients=args.max_clients, replay_capacity=args.replay_capacity,
        allowed_origins=tuple(args.allowed_origin), log_level=args.log_level,
    )


async def serve(settings: Settings) -> None:
    from osintd.app import App  # imported here so that --help stays fast

    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        app = App(settings)
        async with trio.open_nursery() as nursery:
            await nursery.start(app.run)
            async for signum in signals:
                log.info("received %s", signal.Signals(signum).name)
                break
            await app.shutdown()
            nursery.cancel_scope.cancel()
    log.info("stopped")


def main(argv: Sequence[str] | None = None) -> int:
    try:
        settings = settings_from(sys.argv[1:] if argv is None else argv, dict(os.environ))
    except UsageError as exc:
        print(f"osintd: error: {exc}", file=sys.stderr)
        return 2
    logs.configure(settings.log_level)
    try:
        trio.run(serve, settings)
    except Exception as exc:
        bind_error = _first(exc, OSError)
        if bind_error is None:
            raise
        print(f"osintd: error: cannot serve on {settings.host}:{settings.port}: "
              f"{bind_error.strerror or bind_error}", file=sys.stderr)
        return 1
    return 0


def _first(exc: BaseException, kind: type[BaseException]) -> BaseException | None:
    """The first ``kind`` in ``exc``, looking inside exception groups (trio nurseries raise those)."""
    if isinstance(exc, kind):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            if (found := _first(inner, kind)) is not None:
                return found
    return None

"""Client access control: who may read what.

Owns: the formats of the three access files (``--client-tokens-file``,
``--jwt-secret-file``, ``--metrics-token-file``) and their strict reading; taking
a bearer token from a request (``Authorization: Bearer`` or ``?token=``);
checking it (static tokens in constant time, HS256 JWTs with ``exp`` required);
which paths need which token (:meth:`Authenticator.admit`); what a token limits
(a :class:`Grant`: message types and repository globs) and how that narrows a
subscription; the start-up lines that say what is exposed.
Must not: touch a socket, read the wall clock itself (``now`` is given), or let a
token, or any part of one, reach a log line, an error message or a ``repr``.

Paths when access control is on (either token source given):

* open: ``/health`` (liveness probes), ``/`` (the dashboard's page: static code
  with no data in it; it asks for a token and sends it with every request it
  makes), ``/client.js`` and ``/client.d.ts`` (static code), ``POST /webhooks/github`` (GitHub signs
  each delivery; ``--webhook-secret-file`` checks that);
* ``/metrics``: the scrape token of ``--metrics-token-file`` only; without one
  ``/metrics`` is refused (the scrape token alone also guards it when client
  access control is off);
* ``/ws/stats`` and ``/api/v1/health``: a client token without limits (they list
  clients, sources and poll targets, which no limit can narrow);
* everything else (the WebSocket, ``/api/v1/*``, ``/asyncapi.json``, unknown
  paths): any client token.

A wrong, missing or expired token gets 401 with ``WWW-Authenticate: Bearer`` and
the same body every time; nothing says which of the three it was.  A token whose
limits exclude a path's data gets 403.

A token's limits intersect with the client's own subscription, never widen it: a
subscription asking for more is narrowed to what the token allows (not refused),
and ``subscribed`` reports the types in force.  The limit rides on the client's
``Filter`` as its ``within``, so an unlimited client's fan-out costs nothing more.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import re
import stat
import time
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import attrs
import jwt

from osintd import globs
from osintd.broadcaster import Filter
from osintd.httpapi import HttpApi, Response, problem
from osintd.messages import SUBSCRIBABLE_TYPES

log = logging.getLogger(__name__)

#: Seconds a JWT is still taken after its ``exp`` (and before its ``nbf``): clocks differ a little.
JWT_LEEWAY = 30.0
#: Seconds between two log lines about refused tokens (the ones between are counted).
REFUSAL_LOG_EVERY = 1.0
#: The shortest static token or scrape token taken: 16 characters of a random token are ~96 bits.
MIN_TOKEN_LENGTH = 16
MAX_TOKEN_LENGTH = 4096
#: HS256 keys shorter than the hash (32 bytes) are guessable offline from one token (RFC 7518 3.2).
MIN_JWT_SECRET_BYTES = 32
#: The close of a session whose JWT expired (RFC 6455 1008: policy violation).
TOKEN_EXPIRED = (1008, "token expired")

OPEN_PATHS = frozenset({"/health", "/", "/client.js", "/client.d.ts", HttpApi.WEBHOOK_PATH})
METRICS_PATH = "/metrics"
#: Paths whose answers no limit can narrow: only a token without limits reads them.
UNLIMITED_PATHS = frozenset({"/ws/stats", "/api/v1/health"})

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@:-]{0,63}$")
_MAKE_ONE = "make one with: python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"


class AccessFileError(ValueError):
    """An access file osintd will not use; the message names the file (and line), never a token."""


@attrs.frozen
class Grant:
    """What one authenticated client may read.

    ``types`` and ``repos`` are its limits (``None``: no limit); ``expires`` is the
    wall-clock second (leeway included) after which it no longer holds."""

    name: str
    types: frozenset[str] | None = None
    repos: tuple[str, ...] | None = None
    expires: float | None = None
    #: The limits as a Filter: a client's subscription is made ``within`` it.
    scope: Filter | None = attrs.field(init=False, eq=False, repr=False)

    @scope.default
    def _scope(self) -> Filter | None:
        return Filter(self.types, self.repos) if self.limited else None

    @property
    def limited(self) -> bool:
        return self.types is not None or self.repos is not None

    def admits(self, type: str, repo: str | None) -> bool:
        """Whether data of message type ``type`` about ``repo`` is for this client."""
        return self.scope is None or self.scope.admits_kind(type, repo)

    def narrow(self, types: Iterable[str] | None, repos: Iterable[str] | None) -> Filter:
        """A subscription's filter, within this grant's limits."""
        return Filter(frozenset(types) if types is not None else None,
                      tuple(repos) if repos is not None else None, within=self.scope)

    def in_force(self, types: list[str] | None, repos: list[str] | None) -> tuple[list[str] | None,
                                                                                  list[str] | None]:
        """What a ``subscribed`` answer reports for a subscription to ``types`` and ``repos``:
        the types this client will get, and its globs (the token's when it names none)."""
        if not self.limited:
            return types, repos
        if self.types is not None:
            types = [t for t in types if t in self.types] if types is not None else sorted(self.types)
        if repos is None and self.repos is not None:
            repos = list(self.repos)
        return types, repos


UNLIMITED = Grant("anonymous")


@attrs.frozen
class NamedToken:
    """One line of the client tokens file; the token itself is kept only as its SHA-256."""

    name: str
    digest: bytes = attrs.field(repr=False)
    types: frozenset[str] | None = None
    repos: tuple[str, ...] | None = None


def _digest(token: str) -> bytes:
    # Comparing digests keeps every comparison the same length: the time taken says nothing
    # about how much of a token was right, nor how long the real ones are.
    return hashlib.sha256(token.encode()).digest()


# ------------------------------------------------------------------ access files


def read_tokens_file(path: Path) -> tuple[NamedToken, ...]:
    """The client tokens file: one ``NAME TOKEN [types=T,T] [repos=GLOB,GLOB]`` a line,
    ``#`` comments and blank lines ignored.  Raises :class:`AccessFileError` at the first
    line it cannot use, naming ``path:line``, never the token."""
    text = _read_private(path, "--client-tokens-file")
    tokens: list[NamedToken] = []
    names: dict[str, int] = {}
    digests: dict[bytes, int] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):  # only whole lines: a token may hold a "#"
            continue
        where = f"{path}:{number}"
        entry = _token_line(line, where)
        if entry.name in names:
            raise AccessFileError(f"{where}: the name {entry.name!r} is already used on line {names[entry.name]}")
        if entry.digest in digests:
            raise AccessFileError(f"{where}: the token of {entry.name!r} is the same as the one on line "
                                  f"{digests[entry.digest]}; give each client its own")
        names[entry.name] = number
        digests[entry.digest] = number
        tokens.append(entry)
    if not tokens:
        raise AccessFileError(f"--client-tokens-file {path} holds no tokens (lines: NAME TOKEN "
                              f"[types=T,T] [repos=GLOB,GLOB])")
    return tuple(tokens)


def _token_line(line: str, where: str) -> NamedToken:
    fields = line.split()
    name = fields[0]
    if not _NAME.match(name):
        raise AccessFileError(f"{where}: a line is NAME TOKEN [types=T,T] [repos=GLOB,GLOB]; the name must be "
                              f"letters, digits and _.@:- (at most 64), starting with a letter or digit")
    if len(fields) < 2:
        raise AccessFileError(f"{where}: {name!r} has no token (NAME TOKEN [types=T,T] [repos=GLOB,GLOB])")
    token = fields[1]
    if token.startswith(("types=", "repos=")):
        raise AccessFileError(f"{where}: {name!r} has no token: its second field is an option")
    _check_token(token, f"{where}: the token of {name!r}")
    options: dict[str, list[str]] = {}
    for position, option in enumerate(fields[2:], start=3):
        key, equals, value = option.partition("=")
        if key not in ("types", "repos") or not equals:
            # Not echoed: a token typed with a space in it would show its second half here.
            raise AccessFileError(f"{where}: field {position} of {name!r} is not types=T,T or repos=GLOB,GLOB "
                                  f"(a token has no spaces)")
        if key in options:
            raise AccessFileError(f"{where}: {name!r} has {key}= twice")
        options[key] = [part for part in value.split(",") if part]
        if not options[key]:
            raise AccessFileError(f"{where}: {name!r} has an empty {key}=")
    try:
        types = _limit_types(options.get("types"))
        repos = _limit_repos(options.get("repos"))
    except ValueError as exc:
        raise AccessFileError(f"{where}: {name!r}: {exc}") from None
    return NamedToken(name, _digest(token), types, repos)


def _check_token(token: str, what: str) -> None:
    if len(token) < MIN_TOKEN_LENGTH:
        raise AccessFileError(f"{what} is shorter than {MIN_TOKEN_LENGTH} characters; {_MAKE_ONE}")
    if len(token) > MAX_TOKEN_LENGTH:
        raise AccessFileError(f"{what} is longer than {MAX_TOKEN_LENGTH} characters")
    if not (token.isascii() and token.isprintable()):
        raise AccessFileError(f"{what} has characters other than printable ASCII; {_MAKE_ONE}")


def _limit_types(types: list[str] | None) -> frozenset[str] | None:
    if types is None:
        return None
    if unknown := sorted(set(types) - SUBSCRIBABLE_TYPES):
        raise ValueError(f"unknown types {unknown}; choose from {sorted(SUBSCRIBABLE_TYPES)}")
    return frozenset(types)


def _limit_repos(repos: list[str] | None) -> tuple[str, ...] | None:
    if repos is None:
        return None
    globs.check(repos)  # a GlobError is a ValueError
    return tuple(repos)


def read_jwt_secret(path: Path) -> bytes:
    """The HS256 key of ``--jwt-secret-file`` (surrounding whitespace dropped)."""
    secret = _read_private(path, "--jwt-secret-file").strip().encode()
    if len(secret) < MIN_JWT_SECRET_BYTES:
        raise AccessFileError(f"--jwt-secret-file {path} holds {len(secret)} bytes; HS256 needs at least "
                              f"{MIN_JWT_SECRET_BYTES}: {_MAKE_ONE}")
    return secret


def read_metrics_token(path: Path) -> str:
    """The one scrape token of ``--metrics-token-file``."""
    token = _read_private(path, "--metrics-token-file").strip()
    if not token or len(token.split()) != 1:
        raise AccessFileError(f"--metrics-token-file {path} must hold one token (no spaces)")
    _check_token(token, f"--metrics-token-file {path}: the token")
    return token


def _read_private(path: Path, flag: str) -> str:
    """The file's text; refused if every user of the machine may read it."""
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise AccessFileError(f"cannot read {flag} {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise AccessFileError(f"{flag} {path} is not UTF-8 text") from None
    if mode & stat.S_IROTH:
        raise AccessFileError(f"{flag} {path} is readable by every user (mode {stat.S_IMODE(mode):04o}); "
                              f"run: chmod o-rwx {path}")
    return text


# ----------------------------------------------------------------------- checking


@attrs.frozen
class AccessSettings:
    tokens: tuple[NamedToken, ...] = ()
    jwt_secret: bytes | None = attrs.field(default=None, repr=False)
    metrics_token: str | None = attrs.field(default=None, repr=False)

    @property
    def enabled(self) -> bool:
        """Client access control is on: some client token can be checked."""
        return bool(self.tokens) or self.jwt_secret is not None


def unauthorized() -> Response:
    """The one answer to a missing, wrong or expired token."""
    return problem(401, "unauthorized", "a valid token is required", ("WWW-Authenticate", 'Bearer realm="osintd"'))


class Authenticator:
    """Checks the token of each request against the access settings (see the module docstring).

    ``now`` gives the wall-clock time in seconds (the app's clock, so JWT expiry moves with
    trio's clock under test)."""

    def __init__(self, settings: AccessSettings, now: Callable[[], float]) -> None:
        self.settings = settings
        self._now = now
        self._metrics_digest = _digest(settings.metrics_token) if settings.metrics_token else None
        self._last_refusal_logged = -REFUSAL_LOG_EVERY
        self._refusals_unlogged = 0

    @property
    def enabled(self) -> bool:
        return self.settings.enabled

    def admit(self, path: str, query: str, headers: Mapping[str, str]) -> Grant | Response:
        """The grant of a request for ``path``, or the answer that refuses it (401/403)."""
        if path == METRICS_PATH:
            return self._scrape(headers, query)
        if not self.enabled or path in OPEN_PATHS:
            return UNLIMITED
        token = presented_token(headers, query)
        grant = self.check(token) if token is not None else None
        if grant is None:
            return unauthorized()
        if grant.limited and path in UNLIMITED_PATHS:
            return problem(403, "forbidden", f"this token is limited to some types or repositories; {path} "
                                             f"needs a token without limits")
        return grant

    def _scrape(self, headers: Mapping[str, str], query: str) -> Grant | Response:
        if self._metrics_digest is None:
            return unauthorized() if self.enabled else UNLIMITED
        token = presented_token(headers, query)
        if token is not None and hmac.compare_digest(_digest(token), self._metrics_digest):
            return UNLIMITED
        return unauthorized()

    def check(self, token: str) -> Grant | None:
        """The grant of a client token, or None (the reason is logged, the token never)."""
        digest = _digest(token)
        found: NamedToken | None = None
        for entry in self.settings.tokens:  # every one compared: the time says nothing about which matched
            if hmac.compare_digest(digest, entry.digest):
                found = entry
        if found is not None:
            return Grant(found.name, found.types, found.repos)
        if self.settings.jwt_secret is not None and token.count(".") == 2:
            return self._check_jwt(token, self.settings.jwt_secret)
        self._refused("refused a client token: not one of ours")
        return None

    def _check_jwt(self, token: str, secret: bytes) -> Grant | None:
        try:
            # PyJWT checks the signature, the algorithm, the claims' types and "aud" (a token
            # meant for an audience is not for osintd); exp and nbf are checked below, on our clock.
            claims = jwt.decode(token, secret, algorithms=["HS256"],
                                options={"require": ["exp"], "verify_exp": False, "verify_nbf": False,
                                         "verify_iat": False})
        except jwt.PyJWTError as exc:
            self._refused("refused a JWT: %s", type(exc).__name__)
            return None
        subject = claims.get("sub")
        name = subject if isinstance(subject, str) and _NAME.match(subject) else "jwt"
        now = self._now()
        exp, nbf = claims["exp"], claims.get("nbf")
        if not _is_number(exp) or (nbf is not None and not _is_number(nbf)):
            self._refused("refused a JWT of %s: exp and nbf must be numbers", name)
            return None
        if now > exp + JWT_LEEWAY:
            self._refused("refused a JWT of %s: expired %.0f s ago", name, now - exp)
            return None
        if nbf is not None and now + JWT_LEEWAY < nbf:
            self._refused("refused a JWT of %s: not valid for another %.0f s", name, nbf - now)
            return None
        try:
            types = _limit_types(_claim_list(claims, "types"))
            repos = _limit_repos(_claim_list(claims, "repos"))
        except ValueError as exc:
            self._refused("refused a JWT of %s: %s", name, exc)
            return None
        return Grant(name, types, repos, float(exp) + JWT_LEEWAY)

    def _refused(self, message: str, *args: object) -> None:
        """One line for a refused token, at most every REFUSAL_LOG_EVERY seconds: someone
        trying tokens in a loop must not flood the log; the next line counts the rest."""
        now = time.monotonic()
        if now - self._last_refusal_logged < REFUSAL_LOG_EVERY:
            self._refusals_unlogged += 1
            return
        if self._refusals_unlogged:
            message += f" (and {self._refusals_unlogged} more refused since the last such line)"
        log.info(message, *args)
        self._last_refusal_logged, self._refusals_unlogged = now, 0

    # ------------------------------------------------------------------ start-up

    def report(self, sockets: Iterable[object]) -> None:
        """One line on what access control is in force; a WARNING when the port is reachable
        from other machines with none (``sockets``: the listeners' ``getsockname()``), or when
        /metrics cannot be scraped."""
        settings = self.settings
        if self.enabled:
            sources = ([f"{len(settings.tokens)} named tokens"] if settings.tokens else []) + \
                      (["HS256 JWTs"] if settings.jwt_secret is not None else [])
            log.info("access control on: clients need a token (%s)", ", ".join(sources))
            if settings.metrics_token is None:
                log.warning("/metrics is refused to everyone: access control is on and no scrape token is "
                            "configured; add --metrics-token-file")
            return
        addresses = (str(name[0]) for name in sockets if isinstance(name, tuple))  # AF_UNIX names are paths
        exposed = sorted({address for address in addresses if not _is_loopback(address)})
        if exposed:
            log.warning("listening on %s with no access control: anyone who can reach the port reads every "
                        "message, /api/v1/*, /ws/stats (client ids)%s; add --client-tokens-file or "
                        "--jwt-secret-file", ", ".join(exposed),
                        "" if settings.metrics_token else " and /metrics")


def presented_token(headers: Mapping[str, str], query: str) -> str | None:
    """The bearer token of a request: ``Authorization: Bearer T``, else ``?token=T``."""
    authorization = headers.get("authorization")
    if authorization is not None:
        scheme, _, value = authorization.strip().partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    if "token=" in query:
        for key, value in urllib.parse.parse_qsl(query, keep_blank_values=True):
            if key == "token" and value:
                return value
    return None


def without_token(target: str) -> str:
    """A request target fit for a log line: a ``token`` parameter's value replaced by ``***``."""
    path, question, query = target.partition("?")
    if "token=" not in query:
        return target
    pairs = [(key, "***" if key == "token" else value)
             for key, value in urllib.parse.parse_qsl(query, keep_blank_values=True)]
    return path + question + urllib.parse.urlencode(pairs, safe="*,/")


def _claim_list(claims: Mapping[str, object], name: str) -> list[str] | None:
    value = claims.get(name)
    if value is None:
        return None
    if not isinstance(value, list) or not value or not all(isinstance(item, str) and item for item in value):
        raise ValueError(f"the {name} claim must be a non-empty list of strings")
    return value


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.strip("[]").split("%")[0]).is_loopback
    except ValueError:
        return address == "localhost"

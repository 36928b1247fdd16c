"""Where a request came from and which address it was made to, behind proxies or not.

Owns: the shape of an origin (``Origin``: scheme, host, port) and of a public URL;
which peers are trusted proxies (``TrustedProxies``, from ``--forwarded-allow-ips``);
reading ``X-Forwarded-For``/``-Proto``/``-Host`` into what the request really was
(``Forwarded``): the client's address, the scheme and the host it asked for.
Must not: do I/O, log, or decide what to refuse (``server``'s Host and Origin checks
do, with what this module works out).

Invariants:

* Forwarded headers are read only when the peer (the socket's address) is a trusted
  proxy; from anyone else they are ignored, so a client cannot choose the address it is
  logged under or the scheme and host it is checked against.
* The client's address is the right-most ``X-Forwarded-For`` entry that is not itself a
  trusted proxy: the entries to its left were written by whoever it was and prove nothing.
* ``X-Forwarded-Proto`` and ``X-Forwarded-Host`` are used only when they hold one
  well-formed value; anything else is ignored (the socket's scheme and ``Host`` stand).
"""

from __future__ import annotations

import ipaddress
import urllib.parse
from collections.abc import Iterable, Sequence

import attrs

DEFAULT_PORTS = {"http": 80, "https": 443}
#: X-Forwarded-Proto values and the HTTP scheme each stands for.
FORWARDED_SCHEMES = {"http": "http", "https": "https", "ws": "http", "wss": "https"}
#: Longest X-Forwarded-For entry kept as a client's address (an IPv6 address with a zone fits).
MAX_ADDRESS = 64

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@attrs.frozen
class Origin:
    """A web origin, compared the way browsers do: scheme, host and port, the default
    port made explicit, the host in lower case (an IPv6 address without brackets)."""

    scheme: str
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> Origin | None:
        """``scheme://host[:port]`` (a trailing "/" allowed); None for anything else,
        including a path, a query, a login or the opaque origin "null"."""
        try:
            parts = urllib.parse.urlsplit(text.strip())
            port = parts.port
        except ValueError:
            return None
        scheme = parts.scheme.lower()
        if (scheme not in DEFAULT_PORTS or not parts.hostname or parts.path not in ("", "/") or parts.query
                or parts.fragment or "@" in parts.netloc or port == 0):
            return None
        return cls(scheme, parts.hostname.lower(), DEFAULT_PORTS[scheme] if port is None else port)

    @classmethod
    def of_request(cls, scheme: str, host: str | None) -> Origin | None:
        """The origin a request was made to: its scheme and its ``Host`` (name and port)."""
        return None if host is None else cls.parse(f"{scheme}://{host.strip()}")

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        port = "" if DEFAULT_PORTS[self.scheme] == self.port else f":{self.port}"
        return f"{self.scheme}://{host}{port}"


class AddressError(ValueError):
    """A public URL or a proxy address osintd cannot use; the message says what it expects."""


def public_url(text: str) -> Origin:
    """A ``--public-url``: http or https, a host, an optional port, no path beyond "/"."""
    origin = Origin.parse(text)
    if origin is None:
        raise AddressError(f"{text!r} is not a public URL like https://osint.example.com or "
                           "http://192.0.2.2:8000 (http or https, a host, an optional port, no path)")
    return origin


@attrs.frozen
class TrustedProxies:
    """The peers whose ``X-Forwarded-*`` headers are believed (``--forwarded-allow-ips``)."""

    networks: tuple[Network, ...] = ()
    everyone: bool = False

    @classmethod
    def parse(cls, items: Iterable[str]) -> TrustedProxies:
        """Addresses or networks (``127.0.0.1``, ``10.0.0.0/8``, ``::1``), or ``*`` for any peer."""
        networks: list[Network] = []
        everyone = False
        for item in (part.strip() for part in items):
            if item == "*":
                everyone = True
                continue
            try:
                networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                raise AddressError(f"{item!r} is not an IP address or network "
                                   "(e.g. 127.0.0.1, 10.0.0.0/8 or ::1), or *") from None
        return cls(tuple(networks), everyone)

    def __bool__(self) -> bool:
        return self.everyone or bool(self.networks)

    def trusts(self, address: str) -> bool:
        if self.everyone:
            return True
        ip = _ip(address)
        return ip is not None and any(ip.version == net.version and ip in net for net in self.networks)


@attrs.frozen
class Forwarded:
    """What a request was, once a trusted proxy's headers are taken into account."""

    #: The client's address: the socket's peer, or the one a trusted proxy names.
    peer: str
    #: "http", or "https" when a trusted proxy says it took the request over TLS.
    scheme: str
    #: The Host the client asked for (a trusted proxy's X-Forwarded-Host, else Host); None if absent.
    host: str | None

    @classmethod
    def read(cls, peer: str, headers: Sequence[tuple[bytes, bytes]], trusted: TrustedProxies) -> Forwarded:
        """``headers`` as h11 gives them (lower-case names, in order, repeated names kept)."""
        values: dict[bytes, list[str]] = {}
        for name, value in headers:
            values.setdefault(name, []).append(value.decode("latin-1"))
        host = values.get(b"host", [None])[-1]
        if not trusted.trusts(peer):
            return cls(peer, "http", host)
        chain = [entry for line in values.get(b"x-forwarded-for", ()) for entry in line.split(",")]
        scheme = FORWARDED_SCHEMES.get(_single(values.get(b"x-forwarded-proto")).lower(), "http")
        forwarded_host = _single(values.get(b"x-forwarded-host"))
        if forwarded_host and Origin.of_request(scheme, forwarded_host) is None:
            forwarded_host = ""  # not a host[:port]: the proxy's own Host stands
        return cls(client_address(peer, chain, trusted), scheme, forwarded_host or host)


def client_address(peer: str, chain: Sequence[str], trusted: TrustedProxies) -> str:
    """The right-most address in ``chain`` (X-Forwarded-For, oldest first) that is not a
    trusted proxy; the left-most if all are; ``peer`` if the chain is empty."""
    address = peer
    for entry in reversed(chain):
        address = _address(entry)
        if not address or not trusted.trusts(address):
            return address or "unknown"
    return address


def _address(entry: str) -> str:
    """One X-Forwarded-For entry as an address: ``1.2.3.4``, ``1.2.3.4:5678``,
    ``[::1]:5678`` and ``::1`` all give the address alone; anything else is kept as sent
    (cut short), as proxies may write ``unknown`` or an obfuscated name there."""
    entry = entry.strip()
    if entry.startswith("[") and "]" in entry:
        entry = entry[1:entry.index("]")]
    elif entry.count(":") == 1:
        entry = entry.partition(":")[0]
    return entry[:MAX_ADDRESS]


def _single(values: list[str] | None) -> str:
    """The one value of a header sent once with one value, else ""."""
    if not values or len(values) != 1 or "," in values[0]:
        return ""
    return values[0].strip()


def _ip(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped  # a dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d
    return ip


def display_peer(sockname: object) -> str:
    """A socket's peer (or own) address as text: the IP of an (ip, port, ...) tuple, with
    IPv4-mapped IPv6 shown as IPv4; "unix" for a Unix-domain socket."""
    if isinstance(sockname, tuple) and sockname and isinstance(sockname[0], str):
        ip = _ip(sockname[0].partition("%")[0])
        return str(ip) if ip is not None else sockname[0]
    return "unix"

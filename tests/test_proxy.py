"""Behind a proxy: the addresses people use, a page's own origin, forwarded headers, and
a real nginx terminating TLS in front of osintd.

The first tests run the daemon in the test's trio run and speak raw HTTP to it, so every
header (Host, Origin, X-Forwarded-*) is the test's choice.  The last ones are the
acceptance test: Debian's nginx, started by the test on a free loopback port with its own
prefix, configuration and a certificate from a throwaway CA (``trustme``), runs the
README's nginx block in front of ``osintd --demo``; the guide's Python client connects
through ``wss://`` and Chromium opens the dashboard through ``https://``, by name and by IP.
nginx connects to osintd from 127.0.0.2 (``proxy_bind``), so the daemon's log can tell
the proxy's address from the client's.

Without nginx the acceptance tests skip, except under CI (``CI`` set), where they fail:
``.ci/run`` installs it.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import attrs
import pytest
import trio

from conftest import ROOT, Daemon, ScriptedSource, make_settings, missing, spawn_daemon, start_app
from osintd.cli import UsageError, settings_from
from osintd.proxy import Forwarded, Origin, TrustedProxies, client_address

# ------------------------------------------------------------------- the pure parts


def test_origins_compare_as_browsers_do():
    assert Origin.parse("https://Osint.Example") == Origin.parse("https://osint.example:443/")
    assert Origin.parse("http://[::1]:8000") == Origin("http", "::1", 8000)
    assert str(Origin("https", "::1", 443)) == "https://[::1]" and str(Origin("http", "a.b", 81)) == "http://a.b:81"
    assert Origin.parse("https://osint.example") != Origin.parse("http://osint.example")
    for not_an_origin in ("null", "osint.example", "ftp://osint.example", "https://osint.example/dash",
                          "https://user@osint.example", "https://osint.example:99999", "https://osint.example:0",
                          "https://osint.example?x=1", "https://"):
        assert Origin.parse(not_an_origin) is None, not_an_origin


def test_the_client_is_the_right_most_address_no_trusted_proxy_wrote():
    trusted = TrustedProxies.parse(["127.0.0.1", "10.0.0.0/8"])
    assert client_address("127.0.0.1", [], trusted) == "127.0.0.1"
    # Whatever the client wrote itself (the left part) proves nothing.
    assert client_address("127.0.0.1", ["6.6.6.6", " 203.0.113.9"], trusted) == "203.0.113.9"
    assert client_address("127.0.0.1", ["203.0.113.9", "10.1.2.3"], trusted) == "203.0.113.9"
    assert client_address("127.0.0.1", ["10.1.2.3", "10.4.5.6"], trusted) == "10.1.2.3"  # all proxies
    assert client_address("127.0.0.1", ["[2001:db8::7]:4711", "203.0.113.9:5678"], trusted) == "203.0.113.9"
    assert client_address("127.0.0.1", ["unknown"], trusted) == "unknown"
    assert client_address("127.0.0.1", [""], trusted) == "unknown"
    assert TrustedProxies.parse(["::1"]).trusts("::ffff:127.0.0.1") is False
    assert TrustedProxies.parse(["127.0.0.1"]).trusts("::ffff:127.0.0.1")  # a dual-stack socket's peer
    assert TrustedProxies.parse(["*"]).trusts("unix") and not TrustedProxies.parse([]).trusts("127.0.0.1")


def _headers(**named: str | list[str]) -> list[tuple[bytes, bytes]]:
    return [(name.replace("_", "-").lower().encode(), value.encode())
            for name, values in named.items() for value in ([values] if isinstance(values, str) else values)]


def test_forwarded_headers_count_only_from_a_trusted_peer():
    trusted = TrustedProxies.parse(["127.0.0.1"])
    sent = _headers(Host="backend:8000", X_Forwarded_For=["6.6.6.6", "203.0.113.9"], X_Forwarded_Proto="https",
                    X_Forwarded_Host="osint.example")
    assert Forwarded.read("127.0.0.1", sent, trusted) == Forwarded("203.0.113.9", "https", "osint.example")
    assert Forwarded.read("192.0.2.50", sent, trusted) == Forwarded("192.0.2.50", "http", "backend:8000")
    assert Forwarded.read("127.0.0.1", sent, TrustedProxies()) == Forwarded("127.0.0.1", "http", "backend:8000")
    # One well-formed value or nothing: a second Proto, a list, or a Host that is no host is ignored.
    odd = _headers(Host="osint.example", X_Forwarded_Proto=["https", "http"], X_Forwarded_Host="a b/c")
    assert Forwarded.read("127.0.0.1", odd, trusted) == Forwarded("127.0.0.1", "http", "osint.example")
    assert Forwarded.read("127.0.0.1", _headers(Host="h", X_Forwarded_Proto="wss"), trusted).scheme == "https"
    assert Forwarded.read("127.0.0.1", _headers(Host="h", X_Forwarded_Proto="gopher"), trusted).scheme == "http"


def test_public_urls_and_proxy_addresses_are_checked_and_read_from_the_config_file(tmp_path):
    settings = settings_from(["--public-url", "https://Osint.Example:443/", "--public-url", "http://192.0.2.2:8000",
                              "--forwarded-allow-ips", "127.0.0.1, 10.0.0.0/8", "--forwarded-allow-ips", "::1"], {})
    assert settings.public_urls == ("https://osint.example", "http://192.0.2.2:8000")
    assert settings.forwarded_allow_ips == ("127.0.0.1", "10.0.0.0/8", "::1")
    config = tmp_path / "osintd.toml"
    config.write_text('[server]\npublic_urls = ["https://osint.example"]\nforwarded_allow_ips = ["127.0.0.1"]\n')
    from_file = settings_from(["--config", str(config)], {})
    assert from_file.public_urls == ("https://osint.example",) and from_file.forwarded_allow_ips == ("127.0.0.1",)
    for bad, complaint in ((["--public-url", "https://osint.example/dashboard"], "is not a public URL"),
                           (["--public-url", "ftp://osint.example"], "is not a public URL"),
                           (["--public-url", "osint.example"], "is not a public URL"),
                           (["--forwarded-allow-ips", "nginx"], "is not an IP address or network"),
                           (["--forwarded-allow-ips", "127.0.0.1,10.0.0.0/33"], "is not an IP address")):
        with pytest.raises(UsageError, match=complaint):
            settings_from(bad, {})


# --------------------------------------------------------------- the daemon, raw HTTP


@attrs.frozen
class Answer:
    status: int
    body: bytes


async def ask(port: int, *lines: str, upgrade: bool = False, source: str = "127.0.0.1") -> Answer:
    """One request from ``source`` to the daemon: GET / (or a WebSocket upgrade) with ``lines`` as headers."""
    sock = trio.socket.socket()
    await sock.bind((source, 0))
    await sock.connect(("127.0.0.1", port))
    stream = trio.SocketStream(sock)
    head = ["GET /ws/live-updates HTTP/1.1" if upgrade else "GET /health HTTP/1.1", *lines]
    if upgrade:
        key = base64.b64encode(os.urandom(16)).decode()
        head += ["Upgrade: websocket", "Connection: Upgrade", f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13"]
    else:
        head += ["Connection: close"]
    await stream.send_all(("\r\n".join(head) + "\r\n\r\n").encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = await stream.receive_some(65536)
        if not chunk:
            break
        data += chunk
    if not data.startswith(b"HTTP/1.1 101"):
        while chunk := await stream.receive_some(65536):
            data += chunk
    await stream.aclose()
    return Answer(int(data.split()[1]), data.partition(b"\r\n\r\n")[2])


async def test_a_page_opened_by_ip_on_a_wildcard_bind_connects_back_to_where_it_came_from(nursery, autojump_clock):
    """``--host 0.0.0.0``, the page opened as http://192.0.2.2:PORT/: the page loads and its
    WebSocket (Origin http://192.0.2.2:PORT) is accepted; a page from another address is not."""
    app = await start_app(nursery, make_settings(host="0.0.0.0"), source=ScriptedSource())
    here = f"192.0.2.2:{app.port}"
    assert (await ask(app.port, f"Host: {here}")).status == 200
    assert (await ask(app.port, f"Host: {here}", f"Origin: http://{here}", upgrade=True)).status == 101
    assert (await ask(app.port, f"Host: {here}", f"Origin: http://192.0.2.3:{app.port}", upgrade=True)).status == 403
    # Not served over TLS and no trusted proxy says so: an https page is another origin.
    assert (await ask(app.port, f"Host: {here}", f"Origin: https://{here}", upgrade=True)).status == 403
    # A name is still no IP: DNS rebinding stays refused, whatever its Origin.
    rebound = await ask(app.port, "Host: rebind.example", f"Origin: http://rebind.example:{app.port}", upgrade=True)
    assert rebound.status == 421 and b"--public-url" in rebound.body


async def test_a_public_url_is_answered_for_and_its_pages_connect(nursery, autojump_clock):
    app = await start_app(nursery, make_settings(public_urls=("https://osint.example", "http://192.0.2.2:8000")),
                          source=ScriptedSource())
    # What a proxy passing the public Host sends, as nginx with Host $host or Caddy do.
    assert (await ask(app.port, "Host: osint.example")).status == 200
    assert (await ask(app.port, "Host: osint.example", "Origin: https://osint.example", upgrade=True)).status == 101
    assert (await ask(app.port, "Host: osint.example:443", "Origin: https://osint.example:443",
                      upgrade=True)).status == 101
    assert (await ask(app.port, "Host: 192.0.2.2:8000", "Origin: http://192.0.2.2:8000", upgrade=True)).status == 101
    refused = await ask(app.port, "Host: osint.example", "Origin: https://osint.example:8443", upgrade=True)
    assert refused.status == 403 and b"--allowed-origin https://osint.example:8443" in refused.body
    # A page from the other scheme is another origin, unless it is this very (plain HTTP) request's own.
    assert (await ask(app.port, "Host: 192.0.2.2:8000", "Origin: https://192.0.2.2:8000", upgrade=True)).status == 403
    assert (await ask(app.port, "Host: osint.example", "Origin: http://osint.example", upgrade=True)).status == 101
    # Not bound to a wildcard: other addresses are not answered for.
    assert (await ask(app.port, "Host: 192.0.2.3")).status == 421
    assert (await ask(app.port, "Host: other.example")).status == 421


async def test_allowed_origin_admits_another_sites_pages_and_its_host(nursery, autojump_clock):
    app = await start_app(nursery, make_settings(allowed_origins=("https://dash.example",)), source=ScriptedSource())
    own = f"127.0.0.1:{app.port}"
    assert (await ask(app.port, f"Host: {own}", "Origin: https://dash.example", upgrade=True)).status == 101
    assert (await ask(app.port, "Host: dash.example")).status == 200
    assert (await ask(app.port, f"Host: {own}", "Origin: https://other.example", upgrade=True)).status == 403


async def test_behind_a_trusted_proxy_the_forwarded_scheme_and_host_are_checked(nursery, autojump_clock):
    """A TLS proxy on 127.0.0.1 passes Host 127.0.0.1:9443 and X-Forwarded-Proto https: the
    page at https://127.0.0.1:9443 connects.  Sent by anyone else, the same headers count for nothing."""
    settings = make_settings(forwarded_allow_ips=("127.0.0.1",))
    app = await start_app(nursery, settings, source=ScriptedSource())
    through_tls = ("Host: 127.0.0.1:9443", "X-Forwarded-Proto: https", "Origin: https://127.0.0.1:9443")
    assert (await ask(app.port, *through_tls, upgrade=True)).status == 101
    assert (await ask(app.port, *through_tls, upgrade=True, source="127.0.0.2")).status == 403
    # X-Forwarded-Host is checked like Host: a proxy passing a rebinding name gets 421.
    assert (await ask(app.port, f"Host: 127.0.0.1:{app.port}", "X-Forwarded-Host: rebind.example")).status == 421
    assert (await ask(app.port, f"Host: 127.0.0.1:{app.port}", "X-Forwarded-Host: rebind.example",
                      source="127.0.0.2")).status == 200


async def test_the_log_names_the_client_a_trusted_proxy_names_and_no_one_elses(nursery, autojump_clock, caplog):
    caplog.set_level(logging.INFO, logger="osintd.server")
    app = await start_app(nursery, make_settings(forwarded_allow_ips=("127.0.0.2",)), source=ScriptedSource())
    own = f"Host: 127.0.0.1:{app.port}"
    await ask(app.port, own, "X-Forwarded-For: 6.6.6.6, 203.0.113.9", upgrade=True, source="127.0.0.2")
    await ask(app.port, own, "X-Forwarded-For: 198.51.100.7", upgrade=True, source="127.0.0.1")
    await ask(app.port, own, "X-Forwarded-For: 198.51.100.8", "Origin: http://evil.example", upgrade=True,
              source="127.0.0.2")
    await trio.sleep(1)
    lines = [record.getMessage() for record in caplog.records]
    connected = [re.search(r"connected from (\S+) ", line).group(1) for line in lines if " connected from " in line]
    assert connected == ["203.0.113.9", "127.0.0.1"], lines
    assert any(line.startswith("refused WebSocket from 198.51.100.8: origin http://evil.example") for line in lines)
    assert not any("6.6.6.6" in line or "198.51.100.7" in line for line in lines)


async def test_the_host_check_uses_the_listening_sockets_address_not_host(nursery, autojump_clock):
    """Handed a listener (as systemd socket activation does) on 127.0.0.2 while --host says
    0.0.0.0: 127.0.0.2 is answered for, and other IPs are not (the socket is no wildcard)."""
    from osintd.app import App

    listeners = await trio.open_tcp_listeners(0, host="127.0.0.2")
    app = App(make_settings(host="0.0.0.0"), source=ScriptedSource(), listeners=listeners)
    await nursery.start(app.run)
    sock = trio.socket.socket()
    await sock.connect(("127.0.0.2", app.port))
    stream = trio.SocketStream(sock)
    await stream.send_all(f"GET /health HTTP/1.1\r\nHost: 127.0.0.2:{app.port}\r\nConnection: close\r\n\r\n".encode())
    assert (await stream.receive_some(100)).startswith(b"HTTP/1.1 200")
    await stream.aclose()
    sock = trio.socket.socket()
    await sock.connect(("127.0.0.2", app.port))
    stream = trio.SocketStream(sock)
    await stream.send_all(f"GET /health HTTP/1.1\r\nHost: 192.0.2.2:{app.port}\r\nConnection: close\r\n\r\n".encode())
    assert (await stream.receive_some(100)).startswith(b"HTTP/1.1 421")
    await stream.aclose()


# ------------------------------------------------------ a real nginx in front, over TLS

NGINX = os.environ.get("NGINX", "/usr/sbin/nginx")
#: The name people use (``.test`` is reserved: it never resolves by accident).
NAME = "osint.test"
#: nginx connects to osintd from here (``proxy_bind``), the clients to nginx from 127.0.0.1.
PROXY_ADDRESS = "127.0.0.2"
DEMO = ("--demo", "--demo-seed", "3", "--demo-rate", "20", "--heartbeat-interval", "1")


def _need_nginx() -> str:
    if Path(NGINX).exists():
        return NGINX
    missing(f"the proxy tests need nginx at {NGINX} (apt-get install nginx)")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def readme_nginx_block() -> str:
    """The README's nginx configuration, as printed under "Behind a TLS proxy"."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(r"```nginx\n(.*?)```", text[text.index("## Behind a TLS proxy"):], re.S)
    assert match, "README.md has no nginx block under Behind a TLS proxy"
    return match.group(1)


@attrs.define
class Tls:
    ca: Path
    cert: Path
    key: Path
    #: base64 SHA-256 of the certificate's public key, as Chromium's --ignore-certificate-errors-spki-list wants it.
    spki: str


def make_tls(tmp_path: Path) -> Tls:
    import trustme
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    ca = trustme.CA()
    leaf = ca.issue_cert(NAME, "127.0.0.1")
    paths = Tls(tmp_path / "ca.pem", tmp_path / "server.pem", tmp_path / "server.key", "")
    ca.cert_pem.write_to_path(str(paths.ca))
    leaf.private_key_pem.write_to_path(str(paths.key))
    paths.cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    public = x509.load_pem_x509_certificate(leaf.cert_chain_pems[0].bytes()).public_key()
    der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    paths.spki = base64.b64encode(hashlib.sha256(der).digest()).decode()
    return paths


class Nginx:
    """nginx in the foreground (one process, no master), its prefix, pid and logs in ``directory``;
    stopped by its PID."""

    def __init__(self, directory: Path, port: int, upstream: int, tls: Tls) -> None:
        binary = _need_nginx()
        self.directory = directory
        self.port = port
        directory.mkdir()
        block = readme_nginx_block()
        for old, new in (("listen 443 ssl;", f"listen 127.0.0.1:{port} ssl;"),
                         ("/etc/ssl/certs/osint.example.com.pem", str(tls.cert)),
                         ("/etc/ssl/private/osint.example.com.key", str(tls.key)),
                         ("server_name osint.example.com;", f"server_name {NAME};"),
                         ("http://127.0.0.1:8000;", f"http://127.0.0.1:{upstream};")):
            assert old in block, f"the README's nginx block no longer has {old!r}"
            block = block.replace(old, new)
        temp = "\n".join(f"    {kind}_temp_path {directory / kind};"
                         for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        (directory / "nginx.conf").write_text(f"""
daemon off;
master_process off;
worker_processes 1;
pid {directory / 'nginx.pid'};
error_log {directory / 'error.log'} info;
events {{ worker_connections 128; }}
http {{
    access_log {directory / 'access.log'};
{temp}
    proxy_bind {PROXY_ADDRESS};
{block}
}}
""")
        self.process = subprocess.Popen(
            [binary, "-p", f"{directory}/", "-e", str(directory / "error.log"), "-c", str(directory / "nginx.conf")],
            stdout=(directory / "stdout").open("wb"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and self.process.poll() is None:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    return
            time.sleep(0.05)
        self.stop()
        pytest.fail(f"nginx did not start:\n{self.log()}")

    def log(self) -> str:
        return "\n".join(path.read_text(errors="replace") for path in
                         (self.directory / "stdout", self.directory / "error.log") if path.exists())

    def access_log(self) -> str:
        path = self.directory / "access.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)  # graceful: finish the open WebSocket connections' bytes
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@attrs.define
class Deployment:
    daemon: Daemon
    nginx: Nginx
    tls: Tls

    @property
    def public(self) -> str:
        return f"https://{NAME}:{self.nginx.port}"

    def connected_from(self) -> list[str]:
        """The address of every client the daemon's log says connected, in order."""
        return re.findall(r"client client_\d+ connected from (\S+) ", self.daemon.log())


@pytest.fixture
def deployment(tmp_path):
    """osintd --demo behind nginx: TLS on a free loopback port, the name and the IP both work."""
    _need_nginx()
    tls = make_tls(tmp_path)
    port = _free_port()
    daemon = spawn_daemon(tmp_path, *DEMO, "--public-url", f"https://{NAME}:{port}",
                          "--forwarded-allow-ips", PROXY_ADDRESS)
    nginx = None
    try:
        nginx = Nginx(tmp_path / "nginx", port, daemon.port, tls)
        yield Deployment(daemon, nginx, tls)
    finally:
        if nginx is not None:
            nginx.stop()
        if daemon.process.poll() is None:
            daemon.stop()


def _resolver_shim(directory: Path) -> Path:
    """A ``sitecustomize`` that makes NAME resolve to 127.0.0.1 in a Python process, as
    Chromium's --host-resolver-rules does for the browser: the guide's client runs unchanged."""
    directory.mkdir()
    (directory / "sitecustomize.py").write_text(
        "import socket\n"
        "_resolve = socket.getaddrinfo\n"
        f"def _mapped(host, *args, **kwargs):\n"
        f"    return _resolve('127.0.0.1' if host == {NAME!r} else host, *args, **kwargs)\n"
        "socket.getaddrinfo = _mapped\n")
    return directory


def test_the_guides_python_client_connects_through_nginx_over_wss(deployment, tmp_path):
    """(a) The guide's "Python with websockets" client, pointed at wss://NAME:PORT and
    trusting only the test CA, receives the feed; (c) the daemon logs the client's address,
    not nginx's, and only nginx may name it."""
    from test_guide_clients import guide_copy

    url = f"wss://{NAME}:{deployment.nginx.port}/ws/live-updates"
    script = guide_copy("python_websockets.py", url, tmp_path)
    env = {**os.environ, "SSL_CERT_FILE": str(deployment.tls.ca), "PYTHONUNBUFFERED": "1",
           "PYTHONIOENCODING": "utf-8", "PYTHONPATH": str(_resolver_shim(tmp_path / "shim"))}
    out, err = tmp_path / "client.stdout", tmp_path / "client.stderr"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        client = subprocess.Popen([sys.executable, str(script)], stdout=stdout, stderr=stderr, cwd=tmp_path, env=env)
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and client.poll() is None:
            text = out.read_bytes().decode()
            if text.count("💓 Heartbeat") >= 2 and text.count("📨 New ") >= 10:
                break
            time.sleep(0.1)
    finally:
        ended_by_itself = client.poll()
        client.terminate()
        client.wait(timeout=5)
    lines = out.read_bytes().decode().splitlines()
    assert ended_by_itself is None, f"the client ended by itself:\n{lines}\n{err.read_text()}"
    assert err.read_text() == ""
    assert lines[0] == "✅ Connected to live updates", lines[:3]
    client_id = re.fullmatch(r"Connected with ID: (client_\d+)", lines[1]).group(1)
    assert lines.count("💓 Heartbeat") >= 2 and sum(line.startswith("📨 New ") for line in lines) >= 10, lines
    assert re.search(rf"client {client_id} connected from 127\.0\.0\.1 ", deployment.daemon.log())
    assert re.search(r'"GET /ws/live-updates HTTP/1\.1" 101 ', deployment.nginx.access_log())

    # A client that claims to be someone else, through nginx and straight to osintd: nginx
    # appends the address it saw, and osintd believes X-Forwarded-For from nginx only.
    forged = "X-Forwarded-For: 198.51.100.7"
    context = ssl.create_default_context(cafile=str(deployment.tls.ca))
    for connect in (lambda: context.wrap_socket(socket.create_connection(("127.0.0.1", deployment.nginx.port)),
                                                server_hostname=NAME),
                    lambda: socket.create_connection(("127.0.0.1", deployment.daemon.port))):
        with connect() as sock:
            host = f"{NAME}:{deployment.nginx.port}" if isinstance(sock, ssl.SSLSocket) else f"127.0.0.1:{deployment.daemon.port}"
            key = base64.b64encode(os.urandom(16)).decode()
            sock.sendall((f"GET /ws/live-updates HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
                          f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                          f"{forged}\r\n\r\n").encode())
            assert sock.recv(12) == b"HTTP/1.1 101"
    time.sleep(0.5)
    assert deployment.connected_from() == ["127.0.0.1"] * 3, deployment.daemon.log()
    assert "198.51.100.7" not in deployment.daemon.log() and PROXY_ADDRESS not in deployment.daemon.log()


def test_chromium_opens_the_dashboard_through_nginx_by_name_and_by_ip(deployment, tmp_path):
    """(b) The dashboard at https://NAME:PORT/ (its Host a --public-url) and at
    https://127.0.0.1:PORT/ (admitted as the page's own origin: nginx says https, and
    passes the Host with its port): each loads, its WebSocket connects over wss and
    shows live data, and the console stays clean."""
    from test_dashboard import ROWS, STATE, Browser, assert_console_clean

    browser = Browser(tmp_path, (f"--host-resolver-rules=MAP {NAME} 127.0.0.1",
                                 f"--ignore-certificate-errors-spki-list={deployment.tls.spki}"))
    try:
        for origin in (deployment.public, f"https://127.0.0.1:{deployment.nginx.port}"):
            browser.call("phase", name=origin)
            opened = browser.call("open", url=f"{origin}/")
            assert opened["status"] == 200, opened
            browser.wait(f"{STATE}.live && {ROWS}.length === 10 && window.osintdDashboard.events().length >= 5",
                         f"a live dashboard at {origin}", timeout=15)
            assert browser.eval("document.getElementById('conn').dataset.state") == "connected"
            assert browser.eval("location.origin") == origin
            seq = browser.state()["lastSeq"]
            browser.wait(f"{STATE}.lastSeq > {seq} + 10", f"live data still arriving at {origin}")
        console = browser.close()
    finally:
        browser.kill()
    assert_console_clean(console)
    assert deployment.connected_from() == ["127.0.0.1", "127.0.0.1"], deployment.daemon.log()
    assert deployment.nginx.access_log().count('"GET /ws/live-updates') == 2
    assert "refused" not in deployment.daemon.log()

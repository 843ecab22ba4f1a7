"""The native transport on the wire, against real servers on 127.0.0.1: HTTP/2 where the server
offers it (TLS with ALPN h2, a certificate made here and trusted through ``SSL_CERT_FILE``, which
httpx reads when the client is built), HTTP/1.1 otherwise, and one connection pool per model.

The server is hypercorn (an ASGI app streaming a Chat Completions body) behind a small TCP relay
that numbers the connections a client opens and sees when the client closes them; the app records,
per request, the HTTP version of its ASGI scope and the relay connection it came on.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import shutil
import socket
import subprocess
import threading
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import anyio
import pytest
from hypercorn.asyncio.run import worker_serve
from hypercorn.config import Config, Sockets
from hypercorn.typing import Framework
from hypercorn.utils import wrap_app

from lionflow import ProviderError, iModel
from tests.loopback import sse
from tests.providers.test_openai_chat import text_stream

pytestmark = pytest.mark.anyio

BODY = sse(text_stream("Hel", "lo"))
TEXT = "Hello"
H2 = ("h2", "http/1.1")  # ALPN: HTTP/2 offered
Message = dict[str, Any]


@dataclass(frozen=True)
class Certificate:
    cert: Path
    key: Path


@dataclass
class Connection:
    """One TCP connection a client opened to the server."""

    number: int
    closed: threading.Event = field(default_factory=threading.Event)  # the client closed it


@dataclass(frozen=True)
class Seen:
    """One request the app served."""

    http_version: str
    connection: Connection
    model: str
    stream: bool


class Server:
    """hypercorn serving a Chat Completions stream on 127.0.0.1 from its own thread and event loop
    (so it serves a client on either anyio backend), behind a relay that counts connections.

    `hold`: each request waits until that many are in flight at once (at most `hold_seconds`,
    then it is answered 503), so that a test sees whether the client really runs them together.
    """

    def __init__(
        self,
        certificate: Certificate | None = None,
        *,
        alpn: tuple[str, ...] = H2,
        hold: int = 0,
        hold_seconds: float = 5.0,
    ) -> None:
        self.config = Config()
        self.config.errorlog = None
        self.config.keep_alive_timeout = 60.0  # idle connections stay open: only the client closes them
        self.config.graceful_timeout = 1.0
        self.config.h2_max_concurrent_streams = 1000  # the server never caps the client's streams
        self.config.alpn_protocols = list(alpn)
        if certificate is not None:
            self.config.certfile = str(certificate.cert)
            self.config.keyfile = str(certificate.key)
        self.hold = hold
        self.hold_seconds = hold_seconds
        self.connections: list[Connection] = []
        self.seen: list[Seen] = []
        self.port = 0
        self._by_relay_port: dict[int, Connection] = {}
        self._transports: list[asyncio.WriteTransport] = []
        self._upstream_port = 0
        self._in_flight = 0
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._all_in: asyncio.Event | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    def url(self, scheme: str) -> str:
        return f"{scheme}://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> Server:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the test server did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        stop = self._stop = asyncio.Event()
        self._all_in = asyncio.Event()
        upstream = socket.create_server(("127.0.0.1", 0), backlog=1024)
        upstream.setblocking(False)
        self._upstream_port = upstream.getsockname()[1]
        tls = self.config.ssl_enabled
        sockets = Sockets([upstream] if tls else [], [] if tls else [upstream], [])
        app = wrap_app(cast(Framework, self._app), self.config.wsgi_max_body_size, "asgi")
        serving = asyncio.create_task(
            worker_serve(app, self.config, sockets=sockets, shutdown_trigger=stop.wait)
        )
        relay_server = await asyncio.start_server(self._relay, "127.0.0.1", 0, backlog=1024)
        self.port = relay_server.sockets[0].getsockname()[1]
        self._ready.set()
        await stop.wait()
        relay_server.close()
        for transport in self._transports:  # ends the relays' pipes (a cancelled relay logs noise)
            transport.abort()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(serving, 5)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = Connection(len(self.connections))
        self.connections.append(connection)
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._upstream_port)
        # hypercorn sees the relay's port as the client's: requests are traced to their connection.
        self._by_relay_port[up_writer.get_extra_info("sockname")[1]] = connection
        self._transports += [writer.transport, up_writer.transport]

        async def from_client() -> None:
            await _pipe(reader, up_writer)
            connection.closed.set()

        try:
            await asyncio.gather(from_client(), _pipe(up_reader, writer))
        finally:
            writer.close()
            up_writer.close()

    async def _app(
        self,
        scope: Message,
        receive: Callable[[], Awaitable[Message]],
        send: Callable[[Message], Awaitable[None]],
    ) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        request = json.loads(body)
        connection = self._by_relay_port[scope["client"][1]]
        self.seen.append(
            Seen(scope["http_version"], connection, request["model"], request.get("stream", False))
        )
        self._in_flight += 1
        try:
            if self.hold and not await self._all_here():
                error = json.dumps({"error": {"message": f"not {self.hold} requests at once"}}).encode()
                await send({"type": "http.response.start", "status": 503, "headers": []})
                await send({"type": "http.response.body", "body": error})
                return
            headers = [(b"content-type", b"text/event-stream")]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            for piece in BODY:
                await send({"type": "http.response.body", "body": piece, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        finally:
            self._in_flight -= 1

    async def _all_here(self) -> bool:
        assert self._all_in is not None
        if self._in_flight >= self.hold:
            self._all_in.set()
        try:
            await asyncio.wait_for(self._all_in.wait(), self.hold_seconds)
        except TimeoutError:
            return False
        return True


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()
    with contextlib.suppress(OSError):
        if sink.can_write_eof():
            sink.write_eof()


# -- a certificate for 127.0.0.1 -------------------------------------------------------------------


def _make_certificate(folder: Path) -> Certificate:
    """A self-signed certificate for IP 127.0.0.1: with `cryptography` when it is installed, else
    with the ``openssl`` binary; the test skips only when neither is there."""
    made = Certificate(folder / "cert.pem", folder / "key.pem")
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    except ImportError:
        openssl = shutil.which("openssl")
        if openssl is None:
            pytest.skip("making a TLS certificate needs the cryptography package or the openssl binary")
        subprocess.run(
            [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
             "-keyout", str(made.key), "-out", str(made.cert)],
            check=True,
            capture_output=True,
        )  # fmt: skip
        return made
    import ipaddress

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    made.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    made.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return made


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    return _make_certificate(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def trusted(certificate: Certificate, monkeypatch: pytest.MonkeyPatch) -> Certificate:
    """The certificate, trusted by the httpx clients built from here on (httpx 0.28 reads
    ``SSL_CERT_FILE`` in `create_ssl_context`, when a client is made: the iModel is made after)."""
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate.cert))
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    return certificate


@contextlib.contextmanager
def serving(scheme: str, certificate: Certificate | None = None, **options: Any) -> Iterator[Server]:
    """A `Server` for `scheme`: TLS with `certificate` for https, plain for http."""
    with Server(certificate if scheme == "https" else None, **options) as server:
        yield server


def native(server: Server, scheme: str, *, model: str = "gpt-4o-mini") -> iModel:
    return iModel(
        provider="openai",
        model=model,
        transport="native",
        base_url=server.url(scheme),
        api_key="k",
        max_retries=0,
    )


async def closed(connection: Connection) -> bool:
    """Whether the client closes `connection` within a few seconds (a bounded wait, not a timing)."""
    return await anyio.to_thread.run_sync(connection.closed.wait, 5.0)


# -- HTTP versions ---------------------------------------------------------------------------------


async def test_https_streams_over_http2_where_the_server_offers_it(trusted: Certificate) -> None:
    with serving("https", trusted) as server:
        async with native(server, "https") as model:
            with anyio.fail_after(10):
                call = model.invoke("hi")
                deltas = [chunk.data async for chunk in call if chunk.type == "text"]
        assert deltas == ["Hel", "lo"]
        assert call.response is not None
        assert call.response.text == TEXT
        assert [(seen.http_version, seen.stream) for seen in server.seen] == [("2", True)]


async def test_https_speaks_http1_when_the_server_offers_only_http1(trusted: Certificate) -> None:
    with serving("https", trusted, alpn=("http/1.1",)) as server:
        async with native(server, "https") as model:
            with anyio.fail_after(10):
                response = await model.invoke("hi")
        assert response.text == TEXT
        assert [seen.http_version for seen in server.seen] == ["1.1"]


async def test_plain_http_speaks_http1() -> None:
    with serving("http") as server:
        async with native(server, "http") as model:
            with anyio.fail_after(10):
                response = await model.invoke("hi")
        assert response.text == TEXT
        assert [seen.http_version for seen in server.seen] == ["1.1"]


# -- one pool per model ----------------------------------------------------------------------------

# Plain http:// (lionflow's own HTTP/1.1 transport), https:// with HTTP/2, and https:// where the
# server offers only HTTP/1.1 (httpx's HTTP/1.1): each keeps its connections between calls.
WIRES = pytest.mark.parametrize(
    ("scheme", "alpn"),
    [
        pytest.param("http", H2, id="http"),
        pytest.param("https", H2, id="h2"),
        pytest.param("https", ("http/1.1",), id="tls-http1.1"),
    ],
)


@WIRES
async def test_sequential_calls_on_one_model_reuse_one_connection(
    scheme: str, alpn: tuple[str, ...], trusted: Certificate
) -> None:
    with serving(scheme, trusted, alpn=alpn) as server:
        model = native(server, scheme)
        with anyio.fail_after(10):
            for _ in range(4):
                assert (await model.invoke("hi")).text == TEXT
        assert len(server.connections) == 1
        assert {seen.connection.number for seen in server.seen} == {0}
        assert not server.connections[0].closed.is_set()  # kept alive between and after the calls
        await model.aclose()
        assert await closed(server.connections[0]), "aclose() left the connection open"


@WIRES
async def test_two_models_do_not_share_a_pool_and_each_closes_its_own(
    scheme: str, alpn: tuple[str, ...], trusted: Certificate
) -> None:
    with serving(scheme, trusted, alpn=alpn) as server:
        first, second = native(server, scheme, model="first"), native(server, scheme, model="second")
        with anyio.fail_after(10):
            for _ in range(3):
                for model in (first, second):
                    assert (await model.invoke("hi")).text == TEXT
        assert len(server.connections) == 2
        by_model: dict[str, set[int]] = {}
        for seen in server.seen:
            by_model.setdefault(seen.model, set()).add(seen.connection.number)
        assert len(by_model["first"]) == len(by_model["second"]) == 1
        assert by_model["first"] != by_model["second"]
        [mine] = [server.connections[number] for number in by_model["first"]]
        [theirs] = [server.connections[number] for number in by_model["second"]]

        await first.aclose()
        assert await closed(mine), "aclose() left the model's connection open"
        assert not theirs.closed.is_set(), "closing one model closed another's connection"
        assert (await second.invoke("hi")).text == TEXT  # the other model's pool still serves
        assert len(server.connections) == 2
        await second.aclose()
        assert await closed(theirs)


STREAMS = 150  # more than httpx's default pool (100 connections)


async def _all_at_once(model: iModel) -> list[str | ProviderError]:
    """`STREAMS` calls on `model` at once: each one's text, or its error."""
    outcomes: list[str | ProviderError] = []

    async def one() -> None:
        try:
            outcomes.append((await model.invoke("hi")).text)
        except ProviderError as error:
            outcomes.append(error)

    with anyio.fail_after(30):
        async with anyio.create_task_group() as group:
            for _ in range(STREAMS):
                group.start_soon(one)
    return outcomes


async def test_concurrent_streams_are_not_capped_by_a_pool_size_over_http1() -> None:
    with serving("http", hold=STREAMS) as server:
        async with native(server, "http") as model:
            outcomes = await _all_at_once(model)
        failed = [outcome for outcome in outcomes if outcome != TEXT]
        assert not failed, f"{len(failed)} of {STREAMS} streams were not in flight together: {failed[0]!r}"
        assert len(server.seen) == STREAMS
        assert len(server.connections) == STREAMS  # HTTP/1.1: one connection per stream in flight


async def test_concurrent_streams_are_not_capped_over_http2(trusted: Certificate) -> None:
    # 100 streams arrive at once; the 50 others wait for one to end. The held 100 are answered 503
    # after the bounded wait, so the test fails fast where streams are capped.
    with serving("https", trusted, hold=STREAMS, hold_seconds=2.0) as server:
        async with native(server, "https") as model:
            outcomes = await _all_at_once(model)
        failed = [outcome for outcome in outcomes if outcome != TEXT]
        assert not failed, f"{len(failed)} of {STREAMS} streams were not in flight together: {failed[0]!r}"
        assert {seen.http_version for seen in server.seen} == {"2"}

"""Hostile response bodies through the transport, sync and async: compression bombs of any layering,
bodies in UTF-16 and UTF-32, unreadable Content-Length values, a last chunk after the deadline."""

from __future__ import annotations

import codecs
import contextlib
import gzip
import json
import struct
import tracemalloc
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import anyio
import brotli
import httpx
import pytest

import resilient_client as rc
from resilient_client._body import body_headers, content_length
from resilient_client._envelopes import surely_no_fault
from resilient_client.testing import FakeClock

CAP = 65536
JSON = {"content-type": "application/json"}


def zeros_gzip(total: int, block: int = 1 << 20) -> bytes:
    """A valid gzip stream of ``total`` zero bytes, built from one compressed block repeated
    (compressing the zeros for real takes seconds)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zero = bytes(block)
    first = compressor.compress(zero) + compressor.flush(zlib.Z_FULL_FLUSH)
    repeated = compressor.compress(zero) + compressor.flush(zlib.Z_FULL_FLUSH)
    end = compressor.flush()[:-8]  # the last empty block, without the trailer of 2 blocks
    crc = 0
    for _ in range(total // block):
        crc = zlib.crc32(zero, crc)
    trailer = struct.pack("<II", crc, total & 0xFFFFFFFF)
    return first + repeated * (total // block - 1) + end + trailer


def encoded(data: bytes, encoding: str) -> bytes:
    if encoding == "gzip":
        return gzip.compress(data)
    if encoding == "deflate":
        return zlib.compress(data)
    if encoding == "raw-deflate":
        compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
        return compressor.compress(data) + compressor.flush()
    if encoding == "br":
        return bytes(brotli.compress(data, quality=1))
    assert encoding == "identity"
    return data


def on_the_wire(data: bytes, encodings: list[str]) -> bytes:
    """``data`` encoded as ``Content-Encoding: <encodings>`` says: the first listed applied first."""
    for encoding in encodings:
        data = encoded(data, encoding)
    return data


def bomb(encodings: list[str]) -> bytes:
    """The innermost layer expands to zeros, 64 MiB of them (1,024 times the cap) when outer layers
    make that small, else 2 MiB; a few KB on the wire either way."""
    first, *rest = encodings
    expanded = 64 * 2**20 if rest else 2 * 2**20
    inner = zeros_gzip(expanded) if first == "gzip" else encoded(bytes(expanded), first)
    return on_the_wire(inner, rest)


class Chunks(httpx.SyncByteStream, httpx.AsyncByteStream):
    """Raw chunks, as from a socket; ``at`` gives the fake time at which each one arrives."""

    def __init__(self, chunks: list[bytes], clock: FakeClock | None = None, at: list[float] | None = None):
        self.chunks = chunks
        self.clock = clock
        self.at = at

    def __iter__(self) -> Iterator[bytes]:
        for index, chunk in enumerate(self.chunks):
            if self.clock is not None and self.at is not None:
                self.clock.now = max(self.clock.now, self.at[index])
            yield chunk

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self:
            yield chunk


def send(
    transport: rc.ResilientTransport,
    driver: str,
    method: str = "POST",
    stream: bool = False,
    growth: list[int] | None = None,
    raw: list[bytes] | None = None,
) -> httpx.Response | BaseException:
    """One request through an httpx.Client or AsyncClient (driver "sync" / "asyncio" / "trio");
    the peak memory growth of the request alone (not of building the client) goes to ``growth``,
    the raw bytes of a streamed response to ``raw``."""

    def start() -> int:
        tracemalloc.start()
        return tracemalloc.get_traced_memory()[0]

    def stop(base: int) -> None:
        if growth is not None:
            growth.append(tracemalloc.get_traced_memory()[1] - base)
        tracemalloc.stop()

    def sync() -> httpx.Response:
        with httpx.Client(transport=transport) as client:
            request = client.build_request(method, "https://vendor.test/x")
            if growth is not None:  # the endpoint's first call builds its strategies' state: not counted
                with contextlib.suppress(rc.errors.ApiError, httpx.HTTPError):
                    client.send(client.build_request(method, "https://vendor.test/x")).close()
            base = start() if growth is not None else 0
            try:
                response = client.send(request, stream=stream)
            finally:
                stop(base)
            if raw is not None:
                raw.append(b"".join(response.iter_raw()))
            return response

    async def run_async() -> httpx.Response:
        async with httpx.AsyncClient(transport=transport) as client:
            request = client.build_request(method, "https://vendor.test/x")
            if growth is not None:
                with contextlib.suppress(rc.errors.ApiError, httpx.HTTPError):
                    await (await client.send(client.build_request(method, "https://vendor.test/x"))).aclose()
            base = start() if growth is not None else 0
            try:
                response = await client.send(request, stream=stream)
            finally:
                stop(base)
            if raw is not None:
                raw.append(b"".join([chunk async for chunk in response.aiter_raw()]))
            return response

    try:
        return sync() if driver == "sync" else anyio.run(run_async, backend=driver)
    except (rc.errors.ApiError, httpx.HTTPError) as error:
        return error


DRIVERS = [pytest.param(d, id=d) for d in ("sync", "asyncio", "trio")]


def answering(status: int, headers: Any, stream: Callable[[], Any]) -> rc.ResilientTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, headers=headers, stream=stream())

    return rc.ResilientTransport("hyper", transport=httpx.MockTransport(handler), **FakeClock().options())


# -- compressed bodies ----------------------------------------------------------------------------

# The bar of SPEC section 7 is 2 x the cap, for gzip, gzip: there the first layer is itself a bomb
# and decoding stops inside it. Where the first layer fits the cap and the next one explodes, both
# hold up to the cap, plus a decompressor (a zlib window and state: 48 KiB) and the request's own
# objects (about 25 KiB). Without the cap on every layer, each of these costs 32 to 1,024 x the cap.
TWO_CAPS = 2 * CAP
WITH_A_WINDOW = 2 * CAP + 80 * 1024
LAYERINGS = [
    pytest.param(["gzip", "gzip"], TWO_CAPS, id="gzip,gzip"),
    pytest.param(["gzip", "identity", "gzip"], TWO_CAPS, id="gzip,identity,gzip"),
    pytest.param(["gzip", "gzip", "gzip"], TWO_CAPS, id="gzip,gzip,gzip"),
    pytest.param(["deflate", "gzip"], WITH_A_WINDOW, id="deflate,gzip"),
    pytest.param(["gzip", "deflate"], WITH_A_WINDOW, id="gzip,deflate"),
    pytest.param(["br", "gzip"], WITH_A_WINDOW, id="br,gzip"),
    pytest.param(["gzip", "br"], WITH_A_WINDOW, id="gzip,br"),
    pytest.param(["br"], TWO_CAPS, id="br"),
    pytest.param(["deflate"], TWO_CAPS, id="deflate"),
    pytest.param(["gzip"], TWO_CAPS, id="gzip"),
]


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize(("encodings", "bar"), LAYERINGS)
def test_a_compression_bomb_costs_at_most_about_the_cap(encodings: list[str], bar: int, driver: str) -> None:
    wire = bomb(encodings)
    assert len(wire) < 16384  # under the raw read cap: only the decoded size of a layer can stop it
    headers = {**JSON, "content-encoding": ", ".join(encodings)}
    transport = answering(500, headers, lambda: Chunks([wire]))
    growth: list[int] = []
    error = send(transport, driver, growth=growth)
    # Classified by status, as any body over the cap: no layer was decoded past it.
    assert isinstance(error, rc.errors.HyperServerError)
    assert error.code is None
    assert growth[0] < bar


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_compression_bomb_under_200_is_handed_back_raw_and_unread(driver: str) -> None:
    wire = bomb(["gzip", "gzip"])
    transport = answering(200, {**JSON, "content-encoding": "gzip, gzip"}, lambda: Chunks([wire]))
    growth: list[int] = []
    raw: list[bytes] = []
    response = send(transport, driver, stream=True, growth=growth, raw=raw)
    assert isinstance(response, httpx.Response)
    assert growth[0] < 2 * CAP
    assert raw == [wire]


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize(
    "encodings",
    [
        pytest.param(["gzip", "gzip"], id="gzip,gzip"),
        pytest.param(["raw-deflate"], id="raw-deflate"),
        pytest.param(["deflate", "br"], id="deflate,br"),
        pytest.param(["identity", "gzip"], id="identity,gzip"),
    ],
)
def test_a_fault_in_layered_encodings_under_the_cap_is_read(encodings: list[str], driver: str) -> None:
    body = json.dumps({"ResponseCode": 7, "ResponseMsgEng": "Please fill up the required fields."})
    wire = on_the_wire(body.encode(), encodings)
    header = ", ".join("deflate" if e == "raw-deflate" else e for e in encodings)
    transport = answering(200, {**JSON, "content-encoding": header}, lambda: Chunks([wire]))
    assert isinstance(send(transport, driver), rc.errors.Hyper7Error)


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_success_in_layered_encodings_reaches_the_caller_decoded(driver: str) -> None:
    body = json.dumps({"ResponseCode": 0, "Data": "x" * 1000}).encode()
    wire = on_the_wire(body, ["gzip", "gzip"])
    transport = answering(200, {**JSON, "content-encoding": "gzip, gzip"}, lambda: Chunks([wire]))
    response = send(transport, driver)
    assert isinstance(response, httpx.Response)
    assert response.content == body


@pytest.mark.parametrize("driver", DRIVERS)
def test_more_layers_than_are_decoded_for_classification_are_classified_by_status(driver: str) -> None:
    body = json.dumps({"ResponseCode": 7}).encode()
    encodings = ["gzip"] * 5
    wire = on_the_wire(body, encodings)
    transport = answering(503, {**JSON, "content-encoding": ", ".join(encodings)}, lambda: Chunks([wire]))
    error = send(transport, driver)
    assert isinstance(error, rc.errors.HyperServiceUnavailableError)
    assert error.code is None


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_corrupt_compressed_success_fails_as_with_bare_httpx(driver: str) -> None:
    transport = answering(200, {**JSON, "content-encoding": "gzip, gzip"}, lambda: Chunks([b"\x1f\x8bjunk"]))
    error = send(transport, driver)
    assert isinstance(error, httpx.DecodingError)


# -- bodies in UTF-16 and UTF-32 ------------------------------------------------------------------

FAULTS_UNDER_200 = {
    "updox": {"successful": False, "responseCode": 4010, "responseMessage": "Unauthorized"},
    "usta": {"errors": [{"errorCode": 3001, "message": "entity not found"}]},
    "medable": {"object": "fault", "name": "error", "code": "kNotFound", "status": 404, "message": "x"},
    "hyper": {"ResponseCode": 7, "ResponseMsgEng": "Please fill up the required fields."},
}
WIDE = [
    pytest.param(lambda s: s.encode("utf-16-le"), id="utf-16-le"),
    pytest.param(lambda s: s.encode("utf-16-be"), id="utf-16-be"),
    pytest.param(lambda s: s.encode("utf-16"), id="utf-16-bom-native"),
    pytest.param(lambda s: codecs.BOM_UTF16_BE + s.encode("utf-16-be"), id="utf-16-be-bom"),
    pytest.param(lambda s: s.encode("utf-32-le"), id="utf-32-le"),
    pytest.param(lambda s: s.encode("utf-32-be"), id="utf-32-be"),
    pytest.param(lambda s: s.encode("utf-32"), id="utf-32-bom-native"),
    pytest.param(lambda s: codecs.BOM_UTF32_BE + s.encode("utf-32-be"), id="utf-32-be-bom"),
    pytest.param(lambda s: codecs.BOM_UTF8 + s.encode(), id="utf-8-bom"),
]


def outcome_of(vendor: str, body: bytes, driver: str) -> tuple[type, object]:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers=JSON, stream=httpx.ByteStream(body))

    transport = rc.ResilientTransport(vendor, transport=httpx.MockTransport(handler), **FakeClock().options())
    result = send(transport, driver)
    return type(result), getattr(result, "code", None)


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize("encode", WIDE)
@pytest.mark.parametrize("vendor", rc.VENDORS)
def test_a_fault_in_any_json_encoding_is_classified_as_its_utf8_twin(
    vendor: str, encode: Callable[[str], bytes], driver: str
) -> None:
    text = json.dumps(FAULTS_UNDER_200[vendor])
    twin = outcome_of(vendor, text.encode(), driver)
    assert issubclass(twin[0], rc.errors.ApiError)
    assert outcome_of(vendor, encode(text), driver) == twin


@pytest.mark.parametrize("encode", WIDE)
@pytest.mark.parametrize("vendor", rc.VENDORS)
def test_the_success_scan_never_vouches_for_a_wide_body(vendor: str, encode: Callable[[str], bytes]) -> None:
    spec = rc.catalog(vendor).envelope
    # A success body the scan vouches for in UTF-8 is decoded, not vouched for, in UTF-16/32.
    ok = {"updox": {"successful": True, "responseCode": 2000}, "hyper": {"ResponseCode": 0}}.get(vendor, {})
    text = json.dumps(ok)
    assert surely_no_fault(spec, text.encode())
    assert surely_no_fault(spec, encode(text)) == encode(text).startswith(codecs.BOM_UTF8)


# -- Content-Length values nobody should send -----------------------------------------------------

HYPER_7 = json.dumps({"ResponseCode": 7, "ResponseMsgEng": "Please fill up the required fields."}).encode()
LENGTHS = [
    pytest.param("²", rc.errors.Hyper7Error, id="superscript-two"),
    pytest.param("٣", rc.errors.Hyper7Error, id="arabic-indic-three"),
    pytest.param("-1", rc.errors.Hyper7Error, id="negative"),
    pytest.param("1e3", rc.errors.Hyper7Error, id="exponent"),
    pytest.param("+12", rc.errors.Hyper7Error, id="plus-sign"),
    pytest.param("0x40", rc.errors.Hyper7Error, id="hex"),
    pytest.param("  12 ", rc.errors.Hyper7Error, id="spaces"),
    pytest.param("12, 12", rc.errors.Hyper7Error, id="sent-twice"),
    pytest.param("12, 13", rc.errors.Hyper7Error, id="two-values"),
    pytest.param("", rc.errors.Hyper7Error, id="empty"),
    pytest.param("9" * 30, rc.errors.Hyper7Error, id="30-digits"),
    pytest.param("9" * 5000, rc.errors.Hyper7Error, id="5000-digits"),
    pytest.param("0", rc.errors.Hyper7Error, id="zero"),
    # A readable length past the cap: not read, so the status decides (a success here).
    pytest.param("9" * 18, httpx.Response, id="18-digits"),
]


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize(("length", "expected"), LENGTHS)
def test_a_weird_content_length_gives_a_typed_outcome(length: str, expected: type, driver: str) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", length.encode())]
    transport = answering(200, headers, lambda: Chunks([HYPER_7[:10], HYPER_7[10:]]))
    assert isinstance(send(transport, driver, stream=True), expected)


@pytest.mark.anyio
@pytest.mark.parametrize(("length", "expected"), LENGTHS)
async def test_a_weird_content_length_from_an_asgi_app_gives_a_typed_outcome(
    length: str, expected: type
) -> None:
    async def app(
        scope: dict[str, Any], receive: Any, send: Callable[[dict[str, Any]], Awaitable[None]]
    ) -> None:
        headers = [(b"content-type", b"application/json"), (b"content-length", length.encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": HYPER_7})

    transport = rc.ResilientTransport("hyper", transport=httpx.ASGITransport(app), **FakeClock().options())
    async with httpx.AsyncClient(transport=transport) as client:
        try:
            outcome: object = await client.post("http://vendor.test/x")
        except rc.errors.ApiError as error:
            outcome = error
    assert isinstance(outcome, expected)


@pytest.mark.parametrize(
    ("value", "length"),
    [
        pytest.param("12", 12, id="plain"),
        pytest.param("  12 ", 12, id="spaces"),
        pytest.param("12, 12", 12, id="repeated"),
        pytest.param("12,12,12", 12, id="repeated-thrice"),
        pytest.param("12, 13", None, id="conflicting"),
        pytest.param("²", None, id="superscript"),
        pytest.param("1" * 19, None, id="19-digits"),
        pytest.param(None, None, id="absent"),
    ],
)
def test_content_length_reads_only_what_rfc_9110_allows(value: str | None, length: int | None) -> None:
    assert content_length(value) == length


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param([("Content-Type", "application/json"), ("Content-Length", "12")], id="usual"),
        pytest.param([("CONTENT-TYPE", "text/plain"), ("content-encoding", "gzip")], id="any-case"),
        pytest.param([("Content-Length", "12"), ("content-length", "12")], id="sent-twice"),
        pytest.param([("Content-Encoding", "gzip"), ("X-Other", "1"), ("Content-Encoding", "br")], id="list"),
        pytest.param([("Content-Type", "text/plain; name=café".encode())], id="utf-8-value"),
        pytest.param([(b"Content-Type", b"text/plain; name=caf\xe9")], id="latin-1-value"),
        pytest.param([(b"X-Note", b"caf\xc3\xa9"), (b"Content-Type", b"application/json")], id="other-utf-8"),
        pytest.param([("Date", "Tue, 14 Nov 2023 22:13:20 GMT")], id="none-of-them"),
    ],
)
def test_the_body_headers_read_as_headers_get_reads_them(headers: list[tuple[Any, Any]]) -> None:
    # One pass over the raw names, each value decoded as httpx decodes it: the answers are those of
    # three ``headers.get`` calls.
    parsed = httpx.Headers(headers)
    names = ("content-type", "content-length", "content-encoding")
    assert body_headers(parsed) == [parsed.get(name) for name in names]


# -- a last chunk after the deadline ----------------------------------------------------------------


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(HYPER_7, rc.errors.Hyper7Error, id="fault"),
        pytest.param(
            json.dumps({"ResponseCode": 0, "Data": "x" * 100}).encode(), httpx.Response, id="success"
        ),
    ],
)
def test_a_body_whose_last_chunk_arrives_after_the_deadline_is_kept(
    body: bytes, expected: type, declared: bool, driver: str
) -> None:
    clock = FakeClock()
    start = clock.now
    headers = {**JSON, **({"content-length": str(len(body))} if declared else {})}
    policy = rc.RetryPolicy(retry=rc.RetrySettings(total_timeout=1.0))

    def handler(request: httpx.Request) -> httpx.Response:
        chunks = [body[:20], body[20:40], body[40:]]
        return httpx.Response(
            200, headers=headers, stream=Chunks(chunks, clock, [start + 0.2, start + 0.4, start + 1.5])
        )

    transport = rc.ResilientTransport(
        "hyper", policy=policy, transport=httpx.MockTransport(handler), **clock.options()
    )
    outcome = send(transport, driver, method="GET")
    assert isinstance(outcome, expected)
    if isinstance(outcome, httpx.Response):
        assert outcome.content == body


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_a_gzip_body_whose_last_chunk_arrives_after_the_deadline_is_kept(declared: bool, driver: str) -> None:
    clock = FakeClock()
    start = clock.now
    wire = gzip.compress(HYPER_7)
    headers = {**JSON, "content-encoding": "gzip", **({"content-length": str(len(wire))} if declared else {})}
    policy = rc.RetryPolicy(retry=rc.RetrySettings(total_timeout=1.0))

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, headers=headers, stream=Chunks([wire[:10], wire[10:]], clock, [start, start + 1.5])
        )

    transport = rc.ResilientTransport(
        "hyper", policy=policy, transport=httpx.MockTransport(handler), **clock.options()
    )
    assert isinstance(send(transport, driver, method="GET"), rc.errors.Hyper7Error)


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_a_body_still_arriving_after_the_deadline_is_cut(declared: bool, driver: str) -> None:
    clock = FakeClock()
    start = clock.now
    headers = {**JSON, **({"content-length": str(len(HYPER_7))} if declared else {})}
    policy = rc.RetryPolicy(retry=rc.RetrySettings(total_timeout=1.0))

    def handler(request: httpx.Request) -> httpx.Response:
        at = [start + 0.2, start + 1.5, start + 1.6]
        return httpx.Response(
            200, headers=headers, stream=Chunks([HYPER_7[:20], HYPER_7[20:40], HYPER_7[40:]], clock, at)
        )

    transport = rc.ResilientTransport(
        "hyper", policy=policy, transport=httpx.MockTransport(handler), **clock.options()
    )
    assert isinstance(send(transport, driver, method="GET"), httpx.ReadTimeout)


# -- the inner transport is built before the deadline starts ----------------------------------------


@pytest.mark.parametrize("driver", DRIVERS)
def test_the_inner_transport_is_built_before_any_deadline_starts(
    driver: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeClock()
    answers = [httpx.Response(503), httpx.Response(200, json={"ResponseCode": 0})]

    def handler(request: httpx.Request) -> httpx.Response:
        clock.now += 0.3  # the server takes its time
        return answers.pop(0)

    class SlowToBuild(httpx.MockTransport):
        """What building httpx's HTTPTransport costs: a TLS context, and a one-time import."""

        def __init__(self, **options: Any) -> None:
            clock.now += 0.3
            super().__init__(handler)

    monkeypatch.setattr(httpx, "HTTPTransport" if driver == "sync" else "AsyncHTTPTransport", SlowToBuild)
    retry = rc.RetrySettings(total_timeout=0.5, initial_wait=0.01, max_wait=0.01, jitter="none")
    transport = rc.ResilientTransport("hyper", policy=rc.RetryPolicy(retry=retry), **clock.options())
    # The 0.5 s are the request's: after a 0.3 s answer, 0.2 s are left to retry the 503. Paid inside
    # the deadline, the build would leave none, and the 503 would be raised.
    response = send(transport, driver, method="GET")
    assert isinstance(response, httpx.Response)
    assert response.extensions[rc.ATTEMPTS_EXTENSION] == 2

"""Every catalog entry through the transport as the vendor sends it; bodies read only when they must be."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

import resilient_client as rc
from resilient_client.testing import CATEGORY_STATUS, FakeClock, fault_response

ENTRIES = [pytest.param(e, id=f"{v}-{e.code}") for v in rc.VENDORS for e in rc.catalog(v)]
ANY_METHOD = {"locked", "rate_limited", "service_unavailable", "not_ready"}


def send_fault(entry: rc.CatalogEntry) -> tuple[httpx.Response | None, BaseException | None, int]:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        response = fault_response(entry.vendor, entry.code, headers={"x-request-id": "req-42"})
        return response

    transport = rc.ResilientTransport(
        entry.vendor, transport=httpx.MockTransport(handler), **FakeClock().options()
    )
    with httpx.Client(transport=transport) as client:
        try:
            return client.post("https://vendor.test/api/io/Call", json={"a": 1}), None, calls
        except rc.errors.ApiError as error:
            return None, error, calls


@pytest.mark.parametrize("entry", ENTRIES)
def test_every_entry_raises_its_own_class(entry: rc.CatalogEntry) -> None:
    response, error, calls = send_fault(entry)
    if entry.category == "ok":
        assert response is not None
        assert response.extensions[rc.ATTEMPTS_EXTENSION] == 1
        return
    assert isinstance(error, rc.errors.ApiError)
    assert type(error) is entry.exception
    assert error.vendor == entry.vendor
    assert error.code == entry.code
    assert error.message == entry.message
    assert error.category == entry.category
    # The status the response really had: the seed's, else Updox's 200, else the category's usual one.
    expected_status = entry.http_status or (
        200 if entry.vendor == "updox" else CATEGORY_STATUS[entry.category]
    )
    assert error.http_status == expected_status
    rule = rc.load_policy(entry.vendor).rule(entry.code)  # a shipped policy may override a code
    assert error.retryable == (rule.retry if rule and rule.retry is not None else entry.retryable)
    assert error.request_id == "req-42"
    assert error.request is not None and error.request.method == "POST"
    assert error.response is not None and error.response.json()
    assert error.details and error.details[0].code == entry.code
    expected_attempts = 4 if entry.category in ANY_METHOD else 1
    assert error.attempts == calls == expected_attempts
    assert "\n" not in str(error)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("vendor", "code"),
    [
        pytest.param("hyper", 7, id="hyper-7"),
        pytest.param("medable", "kNewLocation", id="kNewLocation"),
        pytest.param("usta", 3001, id="usta-3001"),
        pytest.param("updox", 4010, id="updox-4010"),
    ],
)
async def test_async_entries_raise_their_own_class(vendor: str, code: int | str) -> None:
    entry = rc.catalog(vendor).lookup(code)
    assert entry is not None
    transport = rc.ResilientTransport(
        vendor, transport=httpx.MockTransport(lambda r: fault_response(vendor, code))
    )
    async with httpx.AsyncClient(transport=transport) as client:
        with pytest.raises(entry.exception) as caught:
            await client.post("https://vendor.test/x", json={})
    assert caught.value.code == code
    assert caught.value.attempts == 1


def test_a_success_reaches_the_caller_unchanged() -> None:
    body = {"ResponseCode": 0, "Items": [1, 2], "Note": "é"}
    raw = json.dumps(body).encode()
    inner = httpx.MockTransport(
        lambda r: httpx.Response(
            201, content=raw, headers={"content-type": "application/json", "x-extra": "1"}
        )
    )
    with httpx.Client(transport=rc.ResilientTransport("hyper", transport=inner)) as client:
        response = client.post("https://hyper.test/x", json={})
    assert response.status_code == 201
    assert response.content == raw
    assert response.json() == body
    assert response.headers["x-extra"] == "1"


class RecordingStream(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A chunked body that records how many chunks were pulled and whether it was closed."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks
        self.pulled = 0
        self.closed = False

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self.chunks:
            self.pulled += 1
            yield chunk

    async def __aiter__(self):  # type: ignore[no-untyped-def]
        for chunk in self.chunks:
            self.pulled += 1
            yield chunk

    def close(self) -> None:
        self.closed = True

    async def aclose(self) -> None:
        self.closed = True


def test_a_download_streams_through_unbuffered() -> None:
    stream = RecordingStream([b"x" * 65536] * 50)
    inner = httpx.MockTransport(
        lambda r: httpx.Response(200, headers={"content-type": "application/octet-stream"}, stream=stream)
    )
    with (
        httpx.Client(transport=rc.ResilientTransport("hyper", transport=inner)) as client,
        client.stream("GET", "https://hyper.test/file") as response,
    ):
        assert stream.pulled == 0
        total = sum(len(c) for c in response.iter_raw())
    assert total == 50 * 65536
    assert stream.closed


def test_a_json_stream_longer_than_the_cap_is_read_only_to_the_cap() -> None:
    stream = RecordingStream(
        [b'{"ResponseCode": 0, "Data": "' + b"y" * 30000] + [b"z" * 30000] * 10 + [b'"}']
    )
    inner = httpx.MockTransport(
        lambda r: httpx.Response(200, headers={"content-type": "application/json"}, stream=stream)
    )
    with (
        httpx.Client(transport=rc.ResilientTransport("hyper", transport=inner)) as client,
        client.stream("GET", "https://hyper.test/big") as response,
    ):
        assert stream.pulled == 3  # just past 65536 bytes
        body = response.read()
    assert json.loads(body)["ResponseCode"] == 0
    assert stream.pulled == 12


def test_an_error_body_longer_than_the_cap_is_classified_by_status() -> None:
    big = json.dumps({"ResponseCode": 7, "pad": "p" * 100000}).encode()
    inner = httpx.MockTransport(
        lambda r: httpx.Response(500, content=big, headers={"content-type": "application/json"})
    )
    with (
        httpx.Client(transport=rc.ResilientTransport("hyper", transport=inner)) as client,
        pytest.raises(rc.errors.HyperServerError) as caught,
    ):
        client.post("https://hyper.test/x", json={})
    assert caught.value.code is None


def test_a_gzip_error_body_is_decoded_before_reading() -> None:
    import gzip

    body = gzip.compress(json.dumps({"ResponseCode": 8, "ResponseMsgEng": "no"}).encode())
    inner = httpx.MockTransport(
        lambda r: httpx.Response(
            403,
            stream=RecordingStream([body]),
            headers={"content-type": "application/json", "content-encoding": "gzip"},
        )
    )
    with (
        httpx.Client(transport=rc.ResilientTransport("hyper", transport=inner)) as client,
        pytest.raises(rc.errors.Hyper8Error),
    ):
        client.get("https://hyper.test/x")


@pytest.mark.anyio
async def test_async_download_streams_and_json_is_classified() -> None:
    stream = RecordingStream([b"a" * 1000] * 10)
    answers = iter(
        [
            httpx.Response(200, headers={"content-type": "application/octet-stream"}, stream=stream),
            httpx.Response(200, json={"ResponseCode": 2}),
        ]
    )
    transport = rc.ResilientTransport("hyper", transport=httpx.MockTransport(lambda r: next(answers)))
    async with httpx.AsyncClient(transport=transport) as client:
        async with client.stream("GET", "https://hyper.test/f") as response:
            assert stream.pulled == 0
            assert len(await response.aread()) == 10000
        with pytest.raises(rc.errors.NoResults):
            await client.get("https://hyper.test/q")


@pytest.mark.parametrize("content_type", ["text/html; charset=utf-8", "text/plain", "application/json", None])
def test_a_fault_under_200_is_found_whatever_text_type_it_claims(content_type: str | None) -> None:
    headers = {} if content_type is None else {"content-type": content_type}
    body = json.dumps({"ResponseCode": 7, "ResponseMsgEng": "Please fill up the required fields."}).encode()
    inner = httpx.MockTransport(lambda r: httpx.Response(200, content=body, headers=headers))
    with httpx.Client(transport=rc.ResilientTransport("hyper", transport=inner)) as client:
        with pytest.raises(rc.errors.Hyper7Error):
            client.post("https://hyper.test/x", json={})


def test_a_binary_download_is_not_read_even_under_200() -> None:
    stream = RecordingStream([b"%PDF-1.7 ..."])
    inner = httpx.MockTransport(
        lambda r: httpx.Response(200, headers={"content-type": "application/pdf"}, stream=stream)
    )
    with httpx.Client(transport=rc.ResilientTransport("hyper", transport=inner)) as client:
        with client.stream("GET", "https://hyper.test/doc.pdf") as response:
            assert stream.pulled == 0
            assert response.read() == b"%PDF-1.7 ..."


def test_a_gzip_bomb_is_decoded_only_up_to_the_cap() -> None:
    import gzip

    bomb = gzip.compress(b'{"ResponseCode": 7, "pad": "' + b" " * 50_000_000 + b'"}')
    assert len(bomb) < 65536  # under the raw read cap: only the decoded size can stop it
    inner = httpx.MockTransport(
        lambda r: httpx.Response(
            500,
            stream=RecordingStream([bomb]),
            headers={"content-type": "application/json", "content-encoding": "gzip"},
        )
    )
    policy = rc.load_policy("hyper")
    with (
        httpx.Client(transport=rc.ResilientTransport("hyper", policy=policy, transport=inner)) as client,
        pytest.raises(rc.errors.HyperServerError) as caught,
    ):
        client.post("https://hyper.test/x", json={})
    # Classified by status: the 50 MB the bomb expands to were never decoded to find code 7.
    assert caught.value.code is None


def test_a_streamed_chunked_success_keeps_its_raw_bytes() -> None:
    body = json.dumps({"ResponseCode": 0, "Data": [1, 2]}).encode()
    headers = {"content-type": "application/json"}
    inner = httpx.MockTransport(
        lambda r: httpx.Response(200, stream=RecordingStream([body]), headers=headers)
    )
    with (
        httpx.Client(transport=rc.ResilientTransport("hyper", transport=inner)) as client,
        client.stream("GET", "https://hyper.test/x") as response,
    ):
        assert b"".join(response.iter_raw()) == body


@pytest.mark.parametrize("reach", [True, False], ids=["content-kept", "without-the-reach"])
@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_a_gzip_success_is_decoded_once(declared: bool, reach: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    import gzip

    from httpx._decoders import GZipDecoder

    from resilient_client import _body, _httpx_compat

    monkeypatch.setattr(_httpx_compat, "RESPONSE_CONTENT", reach)

    by_httpx: list[int] = []
    by_transport: list[int] = []
    original_httpx, original_transport = GZipDecoder.decode, _body._inflate

    def counting_httpx(self: GZipDecoder, data: bytes) -> bytes:
        by_httpx.append(len(data))
        return original_httpx(self, data)

    def counting_transport(chunks: list[bytes], wbits: int) -> Iterator[bytes]:
        by_transport.append(sum(len(c) for c in chunks))
        return original_transport(chunks, wbits)

    monkeypatch.setattr(GZipDecoder, "decode", counting_httpx)
    monkeypatch.setattr(_body, "_inflate", counting_transport)
    body = json.dumps({"ResponseCode": 0, "Data": [1, 2]}).encode()
    raw = gzip.compress(body)
    headers = {"content-type": "application/json", "content-encoding": "gzip"}
    if declared:
        headers["content-length"] = str(len(raw))
    inner = httpx.MockTransport(lambda r: httpx.Response(200, stream=RecordingStream([raw]), headers=headers))
    with httpx.Client(transport=rc.ResilientTransport("hyper", transport=inner)) as client:
        assert client.get("https://hyper.test/x").content == body
    # The transport's bounded decoder did the only decoding; the caller's read reused its bytes
    # (without the reach into the response, httpx decodes them a second time, to the same bytes).
    assert by_transport == [len(raw)]
    assert by_httpx == ([] if reach else [len(raw)])


@pytest.mark.parametrize("status", [500, 503, 404])
def test_a_status_without_an_envelope_is_one_outcome_per_catalog(status: int) -> None:
    from resilient_client._catalog import catalog
    from resilient_client._classify import Outcome, classify, status_category

    category = status_category(status)
    assert category is not None
    hyper, usta = catalog("hyper"), catalog("usta")
    first = classify(hyper, status, None)
    assert first == Outcome(category, error_class=hyper.error_class(category))
    assert classify(hyper, status, None) is first  # made once, not on every such answer
    theirs = classify(usta, status, None)
    assert theirs.error_class is usta.error_class(category)
    assert theirs.error_class is not first.error_class

"""The reaches into httpx's private parts: each probe, each reach, and each public fallback.

A fallback is forced by switching its flag off (``monkeypatch``), which is what the SDK does by
itself on an httpx whose layout the probe does not recognise. The end-to-end behaviour under each
fallback is tested beside the behaviour it keeps: ``test_deadline_loopback.py`` (the deadline),
``test_clients.py`` (the transports a client builds), ``test_transport_classify.py`` (a compressed
body decoded once).
"""

from __future__ import annotations

import gzip
from typing import Any

import httpcore
import httpx
import pytest
from httpx._utils import get_environment_proxies

import resilient_client as rc
from resilient_client import _deadline, _httpx_compat
from resilient_client.testing import FakeClock


def test_every_reach_is_in_use_on_the_httpx_installed() -> None:
    # A probe that starts failing after an httpx upgrade switches to the fallback silently (slower,
    # or with the weaker deadline): this test is where that shows.
    assert _httpx_compat.NETWORK_BACKEND
    assert _httpx_compat.CLIENT_TRANSPORT_HOOKS
    assert _httpx_compat.RESPONSE_CONTENT


# -- 1. the network backend ------------------------------------------------------------------------


def test_the_network_backend_probe_fails_when_a_transport_keeps_no_pool(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def without_pool(self: httpx.HTTPTransport, **options: Any) -> None:
        pass

    monkeypatch.setattr(httpx.HTTPTransport, "__init__", without_pool)
    assert not _httpx_compat._probe_network_backend()


@pytest.mark.parametrize("kind", [httpx.HTTPTransport, httpx.AsyncHTTPTransport])
def test_the_deadline_reaches_httpxs_own_network_backend(kind: Any) -> None:
    transport = _deadline.bind(kind())
    assert _deadline.reaches_network(transport)
    backend = _httpx_compat.network_backend(transport)
    assert isinstance(backend, httpcore.NetworkBackend | httpcore.AsyncNetworkBackend)
    assert type(backend).__module__ == "resilient_client._deadline"


@pytest.mark.parametrize("kind", [httpx.HTTPTransport, httpx.AsyncHTTPTransport])
def test_without_the_reach_httpxs_transport_is_left_as_it_is(
    kind: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_httpx_compat, "NETWORK_BACKEND", False)
    transport = kind()
    assert _deadline.bind(transport) is transport
    assert _httpx_compat.network_backend(transport) is None
    assert not _deadline.reaches_network(transport)
    monkeypatch.setattr(_httpx_compat, "NETWORK_BACKEND", True)
    assert type(_httpx_compat.network_backend(transport)).__module__.startswith("httpcore")


def test_other_transports_have_no_network_backend() -> None:
    mock = httpx.MockTransport(lambda request: httpx.Response(200))
    assert _httpx_compat.network_backend(mock) is None
    assert _deadline.bind(mock) is mock
    assert not _deadline.reaches_network(mock)


# -- 2. the transports a client builds -------------------------------------------------------------


def test_the_client_hooks_probe_fails_when_httpx_has_no_such_hook(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _httpx_compat._probe_client_transport_hooks()
    monkeypatch.delattr(httpx.AsyncClient, "_init_proxy_transport")
    assert not _httpx_compat._probe_client_transport_hooks()


ENVIRONMENTS = [
    pytest.param({}, id="none"),
    pytest.param({"HTTPS_PROXY": "http://proxy.test:3128"}, id="https"),
    pytest.param(
        {"HTTP_PROXY": "proxy.test:3128", "ALL_PROXY": "socks5://s.test:1080"}, id="no-scheme-and-all"
    ),
    pytest.param(
        {"HTTPS_PROXY": "http://p.test:1", "NO_PROXY": "localhost, 10.0.0.0/8,::1,.corp.test,http://x.test"},
        id="no-proxy-hosts",
    ),
    pytest.param({"HTTPS_PROXY": "http://p.test:1", "NO_PROXY": "a.test,*"}, id="no-proxy-star"),
]


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_the_fallback_reads_the_environments_proxies_as_httpx_does(
    environment: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    assert _httpx_compat._environment_proxies() == get_environment_proxies()


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_the_fallback_builds_what_httpxs_client_would(
    is_async: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("NO_PROXY", "localhost")
    kind = httpx.AsyncHTTPTransport if is_async else httpx.HTTPTransport
    options: dict[str, Any] = {"verify": False, "trust_env": True, "proxy": None, "timeout": 3}
    default, mounts = _httpx_compat.built_transports(is_async, None, options)
    assert isinstance(default, kind)
    assert set(mounts) == {"https://", "all://localhost"}
    assert isinstance(mounts["https://"], kind) and mounts["all://localhost"] is None
    assert "proxy" not in options  # the client is not to build it again
    # An explicit proxy wins over the environment's; a given transport turns the environment's off.
    given = httpx.MockTransport(lambda request: httpx.Response(200))
    assert _httpx_compat.built_transports(is_async, given, {"proxy": "http://p.test:1"})[1].keys() == {
        "all://"
    }
    assert _httpx_compat.built_transports(is_async, given, {}) == (given, {})


# -- 3. a response's decoded content ---------------------------------------------------------------


def test_the_content_probe_fails_when_read_ignores_the_content_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    def always_decoding(self: httpx.Response) -> bytes:
        return b"".join(self.iter_raw())  # the stream, whatever the response keeps

    monkeypatch.setattr(httpx.Response, "read", always_decoding)
    assert not _httpx_compat._probe_response_content()


BODY = b'{"ResponseCode": 7, "ResponseMsgEng": "no"}'


def gzipped() -> httpx.Response:
    return httpx.Response(
        200, headers={"content-encoding": "gzip"}, stream=httpx.ByteStream(gzip.compress(BODY))
    )


@pytest.mark.parametrize("reach", [True, False], ids=["content-kept", "read-again"])
def test_a_response_is_left_read_with_the_body_given(reach: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_httpx_compat, "RESPONSE_CONTENT", reach)
    response = gzipped()
    _httpx_compat.set_content(response, BODY)
    assert response.content == BODY
    assert response.read() == BODY
    assert b"".join(response.iter_bytes()) == BODY
    assert response.json() == {"ResponseCode": 7, "ResponseMsgEng": "no"}


def test_a_fault_in_a_compressed_body_is_classified_under_either_way(monkeypatch: pytest.MonkeyPatch) -> None:
    raw = gzip.compress(BODY)
    headers = {"content-type": "application/json", "content-encoding": "gzip"}
    for reach in (True, False):
        monkeypatch.setattr(_httpx_compat, "RESPONSE_CONTENT", reach)
        inner = httpx.MockTransport(
            lambda request: httpx.Response(200, headers=headers, stream=StreamOf(raw))
        )
        policy = rc.RetryPolicy(retry=rc.RetrySettings(max_attempts=1))
        transport = rc.ResilientTransport("hyper", transport=inner, policy=policy, **FakeClock().options())
        with httpx.Client(transport=transport) as client, pytest.raises(rc.errors.Hyper7Error) as caught:
            client.get("https://hyper.test/x")
        assert caught.value.response is not None and caught.value.response.content == BODY


class StreamOf(httpx.SyncByteStream):
    """A body that arrives as a stream, as from the network (not already in memory)."""

    def __init__(self, raw: bytes) -> None:
        self.raw = raw

    def __iter__(self) -> Any:
        yield self.raw

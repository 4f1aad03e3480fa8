"""Which response bodies the transport reads, how far, and how they are decoded.

A body is read only when it can carry an envelope (JSON or text content, or any error status), and
only up to the policy's cap (``body.max_read_bytes``): of the raw bytes, and of the decoded bytes of
every content-encoding layer, so a small compressed body (``gzip, gzip``) never costs more than
about the cap in memory or CPU. A body that trickles in is cut at the total deadline, never on the
chunk that completes it. The caller gets a response holding the same bytes, decoded once.

Functions of the call: each takes what it needs (the request, the cap, the clock and the deadline)
rather than the transport.
"""

from __future__ import annotations

import functools
import importlib
import zlib
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from typing import Any, Literal

import httpx

from resilient_client import _httpx_compat

Clock = Callable[[], float]
Plan = Literal["done", "in_place", "stream"]
#: A piece of a body on its way through the decoders (the raw body is sliced, not copied).
Chunk = bytes | memoryview

#: Decoded bytes asked of a decompressor at a time.
_STEP = 8192
#: More content-encoding layers than this are not decoded for classification (httpx still decodes
#: them for the caller): each layer costs up to the cap in CPU.
_MAX_LAYERS = 4


def _optional_module(*names: str) -> Any:
    for name in names:
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    return None


# The decoders httpx itself has (see httpx._decoders): an encoding httpx does not know it skips, so
# the caller reads those bytes as they are, and so does the classifier.
_brotli = _optional_module("brotli", "brotlicffi")
_zstandard = _optional_module("zstandard")


def _brotli_is_bounded() -> bool:
    if _brotli is None:
        return False
    try:
        _brotli.Decompressor().process(b"", output_buffer_limit=1)
    except TypeError:  # Brotli before 1.2 cannot stop at a size: its output is not decoded here
        return False
    return True


_BROTLI_BOUNDED = _brotli_is_bounded()
_DECODE_ERRORS: tuple[type[Exception], ...] = (zlib.error,) + (() if _brotli is None else (_brotli.error,))


@functools.lru_cache(maxsize=256)
def may_carry_envelope(content_type: str | None) -> bool:
    if content_type is None:
        return True
    media = content_type.partition(";")[0].strip().lower()
    # Vendors' PHP and Java stacks send JSON as text/html or text/plain too: any text can carry one.
    return media.endswith(("/json", "+json")) or media.startswith("text/")


#: The headers that decide how a streamed body is read, and their places in ``body_headers``' answer.
_BODY_HEADERS = {b"content-type": 0, b"content-length": 1, b"content-encoding": 2}


def body_headers(headers: httpx.Headers) -> list[str | None]:
    """[Content-Type, Content-Length, Content-Encoding] as ``headers.get`` reads each (a header sent
    twice joined with ``", "``), in one pass over the headers instead of one per name."""
    found: list[bytes | None] = [None, None, None]
    for name, value in headers.raw:
        index = _BODY_HEADERS.get(name.lower())
        if index is not None:
            seen = found[index]
            found[index] = value if seen is None else seen + b", " + value
    # An ASCII value reads the same in every encoding httpx may pick for the headers: their encoding
    # (one decoding attempt of every header) is worked out only for a value that is not ASCII. A
    # loop, not a comprehension: no function of its own to call on every response.
    texts: list[str | None] = []
    for raw in found:
        texts.append(None if raw is None else raw.decode("ascii" if raw.isascii() else headers.encoding))
    return texts


def wants_body(status: int, method: str, content_type: str | None) -> bool:
    """True when the body can carry an envelope: JSON or text content, or any error status."""
    if method == "HEAD" or status in (204, 304):
        return False
    return status >= 400 or may_carry_envelope(content_type)


def content_length(value: str | None) -> int | None:
    """A Content-Length header's value, or None when it cannot be read: the body then counts as one
    of unknown length, read chunk by chunk up to the cap. ASCII digits only (``"²"`` is a digit to
    ``str.isdigit`` but not to ``int``), at most 18 of them; a value repeated in a list
    (``"12, 12"``, the header sent twice) is that value."""
    if value is None:
        return None
    if not (value.isascii() and value.isdigit()):
        values = {part.strip() for part in value.split(",")}
        if len(values) != 1:
            return None
        value = values.pop()
        if not (value.isascii() and value.isdigit()):
            return None
    return int(value) if len(value) <= 18 else None


def is_identity(encoding: str | None) -> bool:
    """Whether a Content-Encoding header (None: absent) leaves the body as it is."""
    return encoding is None or encoding.strip().lower() in ("", "identity")


def content_if_read(response: httpx.Response, cap: int) -> bytes | None:
    # A response built from bytes (MockTransport, respx) arrives already read; the cap still holds.
    try:
        content = response.content
    except httpx.ResponseNotRead:
        return None
    return content if len(content) <= cap else None


def replay(response: httpx.Response, raw: bytes) -> httpx.Response:
    # No request= here: the client sets it on the response it gets back, as for any transport.
    return httpx.Response(
        response.status_code,
        headers=response.headers,
        stream=httpx.ByteStream(raw),
        extensions=response.extensions,
    )


def replay_rest(response: httpx.Response, head: list[bytes], rest: Any) -> httpx.Response:
    """A response that yields the raw chunks already read, then the rest of the original stream."""
    return httpx.Response(
        response.status_code,
        headers=response.headers,
        stream=PrefixedStream(head, response, rest),
        extensions=response.extensions,
    )


def _slices(data: bytes) -> list[Chunk]:
    """The raw body in pieces of ``_STEP`` bytes: a decompressor keeps a copy of the input it has
    not consumed yet, so it is fed a little at a time."""
    view = memoryview(data)
    return [view[start : start + _STEP] for start in range(0, len(data), _STEP)]


def _inflate(chunks: Iterable[Chunk], wbits: int) -> Iterator[bytes]:
    """zlib's output in pieces of at most ``_STEP`` bytes, each asked for only once the one before
    was taken: whoever stops taking them stops the decoding."""
    decompressor = zlib.decompressobj(wbits)
    for chunk in chunks:
        piece = decompressor.decompress(chunk, _STEP)
        yield piece
        while not decompressor.eof and (decompressor.unconsumed_tail or len(piece) == _STEP):
            piece = decompressor.decompress(decompressor.unconsumed_tail, _STEP)
            yield piece
        if decompressor.eof:  # anything after the end of the stream is ignored, as httpx does
            return


def _deflate(chunks: Sequence[Chunk]) -> Iterator[bytes]:
    pieces = _inflate(chunks, zlib.MAX_WBITS)
    try:
        first = next(pieces, b"")
    except zlib.error:  # as httpx does: zlib-wrapped first, then a raw deflate stream
        pieces = _inflate(chunks, -zlib.MAX_WBITS)
        first = next(pieces, b"")
    yield first
    yield from pieces


def _unbrotli(chunks: Iterable[Chunk]) -> Iterator[bytes]:
    decompressor = _brotli.Decompressor()
    for chunk in chunks:
        piece = decompressor.process(chunk, output_buffer_limit=_STEP)
        yield piece
        # Output held back by the limit comes with empty input, until there is none left.
        while piece and not decompressor.is_finished():
            piece = decompressor.process(b"", output_buffer_limit=_STEP)
            yield piece
        if decompressor.is_finished():
            return


_DECODERS: dict[str, Callable[[Sequence[Chunk]], Iterator[bytes]]] = {
    "gzip": lambda chunks: _inflate(chunks, zlib.MAX_WBITS | 16),
    "deflate": _deflate,
    "br": _unbrotli,
}


def _decode_layer(encoding: str, chunks: Sequence[Chunk], cap: int) -> list[bytes] | None:
    """One layer decoded, in pieces, or None once it passes ``cap`` bytes: decoding stops there,
    so the rest of a bomb is never expanded."""
    kept = []
    size = 0
    for piece in _DECODERS[encoding](chunks):
        size += len(piece)
        if size > cap:
            return None
        kept.append(piece)
    return kept


def _layers(response: httpx.Response) -> list[str] | None:
    """The encodings to undo, last applied first, as httpx undoes them; None when one of them
    cannot be decoded within the cap (httpx decodes it for the caller, unbounded)."""
    layers = []
    for value in reversed(response.headers.get_list("content-encoding", split_commas=True)):
        encoding = value.strip().lower()
        if encoding in ("gzip", "deflate"):
            layers.append(encoding)
        elif encoding == "br" and _brotli is not None:
            if not _BROTLI_BOUNDED:
                return None
            layers.append(encoding)
        elif encoding == "zstd" and _zstandard is not None:
            return None
        # identity, and whatever httpx has no decoder for: httpx passes those bytes on as they are
    return layers if len(layers) <= _MAX_LAYERS else None


def decode_capped(response: httpx.Response, raw: bytes, cap: int) -> bytes | None:
    """The body as ``response.read()`` would decode it, or None when a layer would exceed ``cap``
    decoded bytes, cannot be bounded, or is corrupt (the caller meets httpx's own DecodingError
    when it reads, as with bare httpx).

    Each layer stops once it has produced more than ``cap`` bytes and costs at most one cap's
    worth of decoding; it holds its output (at most the cap, in small pieces) while it reads the
    layer before, so memory stays under about twice the cap plus a decompressor's window. A
    ``gzip, gzip`` bomb stops in its first layer, under the cap.
    """
    layers = _layers(response)
    if layers is None:
        return None
    if not layers:
        return raw
    chunks: Sequence[Chunk] = _slices(raw)
    for encoding in layers:
        try:
            decoded = _decode_layer(encoding, chunks, cap)
        except _DECODE_ERRORS:  # a corrupt body
            return None
        if decoded is None:
            return None
        chunks = decoded
    return b"".join(chunks)


def classifiable(
    response: httpx.Response, raw: bytes, identity: bool, cap: int
) -> tuple[httpx.Response, bytes | None]:
    """The body decoded for classification, at most ``cap`` of each layer (a bomb stops there).

    The caller gets a response holding the same bytes, decoded once: read, as ``response.read()``
    leaves it, or unread (the raw bytes) when decoding stopped at the cap or failed.
    """
    if identity:
        return replay(response, raw), raw
    body = decode_capped(response, raw, cap)
    if body is None:
        return replay(response, raw), None
    decoded = replay(response, raw)
    _httpx_compat.set_content(decoded, body)  # the caller's read() returns it, not decoding again
    return decoded, body


def request_id(response: httpx.Response, headers: tuple[str, ...]) -> str | None:
    for name in headers:
        value: str | None = response.headers.get(name)
        if value:
            return value[:200]
    return None


def check_deadline(clock: Clock, deadline: float, request: httpx.Request) -> None:
    """httpx times each read, not the whole body: a body that trickles in is cut at the deadline."""
    if clock() > deadline:
        raise _past_deadline(request)


def _past_deadline(request: httpx.Request) -> httpx.ReadTimeout:
    return httpx.ReadTimeout("the total deadline passed while reading the body", request=request)


class DeadlineStream(httpx.SyncByteStream, httpx.AsyncByteStream):
    """The original stream, checked against the deadline after every chunk but the last: a body
    that has fully arrived is never thrown away."""

    def __init__(
        self, stream: Any, request: httpx.Request, clock: Clock, deadline: float, length: int
    ) -> None:
        self._stream = stream
        self._clock = clock
        self._deadline = deadline
        self._request = request
        self._left = length

    def _arrived(self, chunk: bytes) -> None:
        self._left -= len(chunk)
        if self._left > 0:
            check_deadline(self._clock, self._deadline, self._request)

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._stream:
            self._arrived(chunk)
            yield chunk

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._stream:
            self._arrived(chunk)
            yield chunk

    def close(self) -> None:
        self._stream.close()

    async def aclose(self) -> None:
        await self._stream.aclose()


class PrefixedStream(httpx.SyncByteStream, httpx.AsyncByteStream):
    """The raw chunks already read, then the rest of the original stream, unbuffered."""

    def __init__(self, head: list[bytes], response: httpx.Response, rest: Any) -> None:
        self._head = head
        self._response = response
        self._rest = rest

    def __iter__(self) -> Iterator[bytes]:
        yield from self._head
        yield from self._rest

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self._head:
            yield chunk
        async for chunk in self._rest:
            yield chunk

    def close(self) -> None:
        self._response.close()

    async def aclose(self) -> None:
        await self._response.aclose()


def read_plan(
    response: httpx.Response,
    request: httpx.Request,
    cap: int,
    clock: Clock,
    deadline: float,
    network_bounded: bool = False,
) -> tuple[Plan, bytes | None, int | None, bool]:
    """How a body is read, without I/O: ("done", body or None, ...) when nothing is left to read;
    ("in_place", ...) for an identity body known to fit (its stream now cut at the deadline);
    ("stream", None, declared length, identity?) for the rest, read chunk by chunk up to the cap.

    ``network_bounded``: the response came through httpx's own transport, whose network operations
    the deadline bounds (``_deadline.reaches_network``)."""
    headers = response.headers
    status = response.status_code
    if response.is_stream_consumed:  # read already (MockTransport, respx): only its type matters
        # An error status wants its body whatever its type (``wants_body``): no header looked up.
        content_type = headers.get("content-type") if status < 400 else None
        if not wants_body(status, request.method, content_type):
            return "done", None, None, True
        return "done", content_if_read(response, cap), None, True
    content_type, declared_length, content_encoding = body_headers(headers)
    if not wants_body(status, request.method, content_type):
        return "done", None, None, True
    length = content_length(declared_length)
    # ``is_identity``'s usual answer in place: most responses name no encoding.
    identity = content_encoding is None or is_identity(content_encoding)
    if length is not None and length > cap:
        return "done", None, length, True
    if length is not None and identity:
        # A body already in memory (MockTransport, respx, a replay) cannot trickle in: only a
        # stream still arriving is cut at the deadline. A transport whose network operations read
        # the deadline already bounds every read by it (``_deadline.reaches_network``).
        if not (network_bounded or isinstance(response.stream, httpx.ByteStream)):
            response.stream = DeadlineStream(response.stream, request, clock, deadline, length)
        return "in_place", None, length, True
    return "stream", None, length, identity


class _Chunks:
    """Raw chunks gathered up to the cap, and when the deadline cuts them.

    A chunk that arrives after the deadline is kept when it completes the body: with a declared
    length the byte count tells; without one only the next read does (its end, or one more chunk,
    which is then cut).
    """

    __slots__ = ("clock", "deadline", "head", "late", "length", "request", "size")

    def __init__(self, clock: Clock, deadline: float, request: httpx.Request, length: int | None) -> None:
        self.clock = clock
        self.deadline = deadline
        self.request = request
        self.length = length
        self.head: list[bytes] = []
        self.size = 0
        self.late = False

    def add(self, chunk: bytes, cap: int) -> bool:
        """Keep a chunk; False once past the cap (the rest is left unread)."""
        if self.late:
            raise _past_deadline(self.request)
        self.head.append(chunk)
        self.size += len(chunk)
        if self.size > cap:
            return False
        if self.clock() > self.deadline:
            if self.length is None:
                self.late = True
            elif self.size < self.length:
                raise _past_deadline(self.request)
        return True


def read_sync(
    response: httpx.Response,
    request: httpx.Request,
    cap: int,
    clock: Clock,
    deadline: float,
    network_bounded: bool = False,
) -> tuple[httpx.Response, bytes | None]:
    """The response to hand on and the body to classify (None: classify by status)."""
    plan, body, length, identity = read_plan(response, request, cap, clock, deadline, network_bounded)
    if plan == "done":
        return response, body
    if plan == "in_place":
        return response, response.read()
    chunks = _Chunks(clock, deadline, request, length)
    raw = response.iter_raw()
    for chunk in raw:
        if not chunks.add(chunk, cap):
            return replay_rest(response, chunks.head, raw), None
    response.close()
    return classifiable(response, b"".join(chunks.head), identity, cap)


async def read_async(
    response: httpx.Response,
    request: httpx.Request,
    cap: int,
    clock: Clock,
    deadline: float,
    network_bounded: bool = False,
) -> tuple[httpx.Response, bytes | None]:
    """The async twin of ``read_sync``."""
    plan, body, length, identity = read_plan(response, request, cap, clock, deadline, network_bounded)
    if plan == "done":
        return response, body
    if plan == "in_place":
        return response, await response.aread()
    chunks = _Chunks(clock, deadline, request, length)
    raw = response.aiter_raw()
    async for chunk in raw:
        if not chunks.add(chunk, cap):
            return replay_rest(response, chunks.head, raw), None
    await response.aclose()
    return classifiable(response, b"".join(chunks.head), identity, cap)

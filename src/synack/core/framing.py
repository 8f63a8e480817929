"""Sans-IO length-prefixed frames (docs/protocol.md §1): the cure for "sticky packets".

TCP delivers a byte stream, not messages: one ``recv`` may hold half a message
or twenty. Every message on a synack TCP connection is therefore one frame, a
4-byte big-endian payload length followed by the payload.

``FrameDecoder`` is the incremental receive side. It does no I/O and keeps no
clock: feed it bytes with ``receive_data`` (or let a ``BufferedProtocol`` read
straight into it with ``get_buffer``/``buffer_updated``), then take frames with
``next_event``/``frames``. Any split of the byte stream gives the same frames.

Bounded and transactional (house style item 7): a header is checked against
``max_frame`` the moment its 4 bytes are complete, before a single body byte is
kept, so an announced 4 GiB frame costs nothing. At most one partial frame is
ever held; complete frames are sliced out of the read with memoryviews.

Only what arrived is buffered (issue 14): a partial frame's buffer holds the
bytes received so far, never the announced length. A peer that sends a 4-byte
header announcing 64 KiB and then nothing costs 4 bytes here, not 64 KiB.
A large body grows by doubling what has arrived (so at most twice what
arrived is ever allocated); once 16 KiB of it are in, the kernel may write the
next chunk straight into the body (one copy for big frames).

Layer: core. Imports synack.errors and the standard library.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator

from synack.errors import LocalProtocolError, RemoteProtocolError

__all__ = [
    "DEFAULT_MAX_FRAME",
    "HEADER_SIZE",
    "MAX_LENGTH",
    "FrameDecoder",
    "FrameTooLarge",
    "Payload",
    "TruncatedFrame",
    "encode",
    "encode_many",
]

HEADER_SIZE = 4
MAX_LENGTH = 0xFFFF_FFFF  # what a uint32 length can say
DEFAULT_MAX_FRAME = 65_536  # the chat default (docs/protocol.md §1)

# A decoded payload: ``bytes``, or the ``bytearray`` a frame was received into
# when it was assembled in its own buffer (large frames: no copy). The decoder
# never touches a payload again once handed out; the caller owns it.
Payload = bytes | bytearray

_HEADER = struct.Struct(">I")
_pack = _HEADER.pack
_unpack_from = _HEADER.unpack_from

# Reads land in a preallocated scratch buffer. It starts small (a server holds
# thousands of mostly idle connections, each with its own) and doubles whenever
# a read fills it, up to the largest size worth one recv; it halves again when
# _SHRINK_AFTER reads in a row used under an eighth of it, so a connection that
# once sent a burst does not keep 256 KiB while it trickles. One small read is
# no reason: a client's burst often starts with one small read (its first
# write arrives before the rest), and halving there made every burst take
# several reads again (and a chat server one flush, so one write per client,
# per read: bench/chat_fanout.py).
_SCRATCH_MIN = 2 * 1024
_SCRATCH_MAX = 256 * 1024
_SHRINK_AFTER = 8
# When this much of a pending body is still missing, the kernel may write it
# straight into the body's own buffer instead of the scratch (no second copy).
_DIRECT_MIN = 16 * 1024
# Frames at least this large are copied out of a read via memoryview.
_BIG = 2048


class FrameTooLarge(RemoteProtocolError):
    """A header announced a frame longer than the receiver's ``max_frame``."""

    def __init__(self, length: int, max_frame: int) -> None:
        super().__init__(f"frame of {length} bytes announced; the limit is {max_frame}")
        self.length = length
        self.max_frame = max_frame


class TruncatedFrame(RemoteProtocolError):
    """The byte stream ended in the middle of a frame."""

    def __init__(self, received: int, expected: int | None) -> None:
        if expected is None:
            what = f"{received} of {HEADER_SIZE} header bytes"
        else:
            what = f"{received} of {expected} payload bytes"
        super().__init__(f"connection ended inside a frame ({what})")
        self.received = received
        self.expected = expected


def encode(payload: bytes | bytearray | memoryview) -> bytes:
    """One frame: the 4-byte length, then the payload."""
    try:
        return (
            _pack(len(payload) if not isinstance(payload, memoryview) else payload.nbytes) + payload
        )
    except struct.error:
        raise LocalProtocolError("payload does not fit a 32-bit length") from None


def encode_many(payloads: Iterable[bytes]) -> bytes:
    """Several frames as one buffer, ready for a single write (batched sends)."""
    # bytearray += is the cheapest way CPython has to build this (no list, no join).
    out = bytearray()
    try:
        for p in payloads:
            out += _pack(len(p))
            out += p
    except struct.error:
        raise LocalProtocolError("payload does not fit a 32-bit length") from None
    return bytes(out)


class FrameDecoder:
    """Incremental frame decoder.

    Verbs (house style item 1): ``receive_data(data)`` (``b""`` means end of
    stream), ``next_event() -> Payload | None``, and ``frames()`` for everything
    ready at once. ``get_buffer``/``buffer_updated`` mirror
    ``asyncio.BufferedProtocol`` so an adapter can receive into preallocated
    memory.

    A protocol error (``FrameTooLarge`` at any time, ``TruncatedFrame`` at end of
    stream) is raised by ``next_event``/``frames`` once the frames that came
    before it have been handed out; it then stays raised.
    """

    __slots__ = (
        "_body",
        "_body_view",
        "_direct",
        "_eof",
        "_error",
        "_have",
        "_hdr",
        "_next",
        "_ready",
        "_scratch",
        "_scratch_view",
        "_small_reads",
        "_want",
        "max_frame",
    )

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        if not 0 <= max_frame <= MAX_LENGTH:
            raise LocalProtocolError(f"max_frame must be 0..{MAX_LENGTH}, not {max_frame}")
        self.max_frame = max_frame
        self._ready: list[Payload] = []
        self._next = 0  # index of the next frame in _ready for next_event()
        self._hdr = bytearray()  # a header split across reads (< 4 bytes)
        # The pending frame: _want bytes announced, _have received into
        # _body[:_have]; len(_body) is what is allocated, never more than
        # max(_have, min(_want, 2 * _have)) (see _direct_room).
        self._body: bytearray | None = None
        self._body_view: memoryview | None = None  # only while a direct read is out
        self._have = 0
        self._want = 0
        self._eof = False
        self._error: RemoteProtocolError | None = None
        self._scratch: bytearray | None = None
        self._scratch_view: memoryview | None = None
        self._small_reads = 0  # in a row, each under an eighth of the scratch
        self._direct = False

    # -- input --------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Feed bytes from the peer; ``b""`` reports the end of the stream."""
        if self._eof:
            raise LocalProtocolError("receive_data() after end of stream")
        if not data:
            self._eof = True
            if self._error is None and (self._hdr or self._body is not None):
                if self._body is None:
                    self._error = TruncatedFrame(len(self._hdr), None)
                else:
                    self._error = TruncatedFrame(self._have, self._want)
            return
        if self._error is not None:
            return  # the stream is already broken; nothing after the error counts
        self._feed(data if isinstance(data, bytes) else bytes(data))

    def get_buffer(self, sizehint: int = -1) -> memoryview:
        """Memory for the next read (``asyncio.BufferedProtocol.get_buffer``)."""
        body = self._body
        if (
            body is not None
            and self._have >= _DIRECT_MIN
            and self._want - self._have >= _DIRECT_MIN
        ):
            # A large body is pending and a good part of it has arrived: let
            # the read fill it in place, in room that doubles what arrived.
            self._direct = True
            room = min(self._want, 2 * self._have)
            if len(body) < room:
                body = self._body = self._resized(body, room)
            self._body_view = memoryview(body)[self._have : room]
            return self._body_view
        self._direct = False
        if self._scratch_view is None:
            self._scratch = bytearray(_SCRATCH_MIN)
            self._scratch_view = memoryview(self._scratch)
        return self._scratch_view

    def buffer_updated(self, nbytes: int) -> None:
        """``nbytes`` were written into the last ``get_buffer`` view."""
        if self._error is not None or nbytes <= 0:
            return
        if self._direct:
            self._direct = False
            self._body_view = None
            self._have += nbytes
            body = self._body
            assert body is not None
            if self._have == self._want:
                self._ready.append(body)  # the buffer itself: no copy
                self._body = None
                self._have = self._want = 0
            return
        scratch = self._scratch_view
        assert scratch is not None
        view = scratch[:nbytes]
        size = len(scratch)
        if nbytes < size >> 3:
            if size > _SCRATCH_MIN:
                self._small_reads += 1
                if self._small_reads >= _SHRINK_AFTER:
                    self._small_reads = 0
                    self._scratch = bytearray(size >> 1)
                    self._scratch_view = memoryview(self._scratch)
        else:
            self._small_reads = 0
            if nbytes == size and size < _SCRATCH_MAX:
                # The read filled the buffer: more is waiting. Read more at a time.
                self._scratch = bytearray(2 * size)
                self._scratch_view = memoryview(self._scratch)
        body = self._body
        if (body is not None and self._want >= _BIG) or (
            body is None
            and not self._hdr
            and nbytes >= HEADER_SIZE
            and _unpack_from(view)[0] >= _BIG
        ):
            # Large frames: copy each straight out of the read (one copy).
            self._feed(view)
        else:
            # Small frames: one snapshot of the read as bytes, then slicing bytes
            # makes each frame in one step, measurably faster than
            # memoryview slice + tobytes() per frame.
            self._feed(view.tobytes())

    def _feed(self, data: bytes | memoryview) -> None:
        n = len(data)
        is_view = isinstance(data, memoryview)
        mv = data if isinstance(data, memoryview) else memoryview(data)
        pos = 0
        ready = self._ready
        if self._body is not None or self._hdr:
            # Slow path: finish the one pending frame, header first.
            if self._body is None:
                hdr = self._hdr
                take = min(HEADER_SIZE - len(hdr), n)
                hdr += mv[:take]
                pos = take
                if len(hdr) < HEADER_SIZE:
                    return
                (length,) = _unpack_from(hdr)
                hdr.clear()
                if length > self.max_frame:
                    self._error = FrameTooLarge(length, self.max_frame)
                    return
                self._body = bytearray()
                self._have = 0
                self._want = length
            body = self._body
            have = self._have
            take = min(self._want - have, n - pos)
            if take:
                # Writes in place within what is allocated, appends past it.
                if len(body) < have + take:
                    body = self._body = self._resized(body, have + take)
                body[have : have + take] = mv[pos : pos + take]
                self._have = have = have + take
                pos += take
            if have < self._want:
                return
            ready.append(body)
            self._body = None
            self._have = self._want = 0
        # Fast path: whole frames straight out of this read.
        max_frame = self.max_frame
        while n - pos >= HEADER_SIZE:
            (length,) = _unpack_from(data, pos)
            if length > max_frame:
                self._error = FrameTooLarge(length, max_frame)
                return
            end = pos + HEADER_SIZE + length
            if end > n:
                # The rest is the start of a frame: keep what arrived of its
                # body (header checked), not the length it announces.
                self._body = bytearray(mv[pos + HEADER_SIZE :])
                self._have = n - pos - HEADER_SIZE
                self._want = length
                return
            if is_view:
                ready.append(mv[pos + HEADER_SIZE : end].tobytes())
            else:
                ready.append(data[pos + HEADER_SIZE : end])  # type: ignore[arg-type]
            pos = end
        if pos < n:
            self._hdr += mv[pos:]

    @staticmethod
    def _resized(body: bytearray, size: int) -> bytearray:
        """``body`` grown to ``size`` bytes (or left as long, if it is already).

        A memoryview handed to the last direct read may still be alive in
        the caller's frame, and a bytearray with a live export cannot be
        resized: then the bytes move to a new buffer (doubling keeps the
        total of such copies under the frame's size).
        """
        extra = size - len(body)
        if extra <= 0:
            return body
        try:
            body.extend(bytes(extra))
        except BufferError:
            grown = bytearray(size)
            grown[: len(body)] = body
            return grown
        return body

    # -- output -------------------------------------------------------------

    def next_event(self) -> Payload | None:
        """The next complete payload, or None when more bytes are needed."""
        ready = self._ready
        if self._next < len(ready):
            frame = ready[self._next]
            self._next += 1
            if self._next == len(ready):
                ready.clear()
                self._next = 0
            return frame
        if self._error is not None:
            raise self._error
        return None

    def frames(self) -> list[Payload]:
        """Every complete payload available now (empty when more bytes are needed)."""
        ready = self._ready
        if ready:
            if self._next:
                out = ready[self._next :]
                self._next = 0
            else:
                out = ready
            self._ready = []
            return out
        if self._error is not None:
            raise self._error
        return []

    def __iter__(self) -> Iterator[Payload]:
        while (frame := self.next_event()) is not None:
            yield frame

    @property
    def pending(self) -> int:
        """Bytes of an incomplete frame currently held (header included)."""
        if self._body is not None:
            return HEADER_SIZE + self._have
        return len(self._hdr)

    @property
    def allocated(self) -> int:
        """Bytes of memory held for the incomplete frame (at most twice ``pending``)."""
        if self._body is not None:
            return len(self._body)
        return len(self._hdr)

    @property
    def eof(self) -> bool:
        return self._eof

    @property
    def error(self) -> RemoteProtocolError | None:
        return self._error

"""Send and receive buffers (RFC 9293 §3.8.6, §3.10.7.4 "segment text").

Both are bounded. Positions inside the buffers are plain byte offsets, never
sequence numbers: the connection converts between the two, so modulo-2**32
arithmetic stays in one place (seq.py).

Layer: tcp. Imports synack.errors.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import deque
from typing import cast, final

from synack.errors import LocalProtocolError

# RFC 2018 §4 history: at most 4 blocks fit an option, so a few more
# remembered positions cover blocks since filled or merged.
_RECENT_KEPT = 8
_BIG = 1 << 62
# In-order payloads shorter than this are copied into a shared tail instead
# of kept as they are: a peer sending tiny segments must not make a bytes
# object per octet or two (40-odd octets of overhead each) within our window.
_SMALL = 1024
_TAIL_MAX = 64 * 1024


class Lender:
    """Whoever lends a send buffer octets it must not read (:class:`Lent`):
    a file's pages mapped for a zero-copy ``sendfile`` (adapters/native.py).
    The mapping's memory is touched by the kernel only: a user-space read of
    a mapped page past the file's end (a file truncated meanwhile) raises
    SIGBUS, which kills the process, where the kernel's copy (the TAP's
    gather write) fails with EFAULT. So the lender, not this layer, says how
    the octets are had: :meth:`read` (a safe copy, e.g. ``os.pread``) for
    anything in user space that needs them, :meth:`kernel_views` for a
    write system call only; :meth:`refused`, when the kernel could not read
    them."""

    __slots__ = ()

    def read(self, start: int, n: int) -> bytes:
        """``n`` octets from ``start``: a copy made without reading the
        mapping (zeros where the source no longer has them)."""
        raise NotImplementedError

    def kernel_views(self, start: int, n: int) -> tuple[bytes | memoryview, ...]:
        """Views of ``n`` octets from ``start``, in order, for a gather
        write system call to copy."""
        raise NotImplementedError

    def refused(self, exc: OSError) -> None:
        """The kernel could not copy the octets (EFAULT: the source shrank)."""
        raise NotImplementedError


@final
class Lent:
    """``size`` octets of a :class:`Lender` from ``start``: a send-buffer
    piece and a segment's payload that is not a buffer (no buffer protocol),
    so nothing can read the octets by accident: ``bytes()`` of it asks the
    lender for a copy, and only :meth:`kernel_views` (called by the link's
    write, links/tap.py) reaches the mapped memory. ``len``, truth and
    slicing (step 1) work as for the bytes it stands for."""

    __slots__ = ("lender", "size", "start")

    def __init__(self, lender: Lender, start: int, size: int) -> None:
        self.lender = lender
        self.start = start
        self.size = size

    def __len__(self) -> int:
        return self.size

    def __bytes__(self) -> bytes:
        return self.lender.read(self.start, self.size)

    def __getitem__(self, key: slice) -> Lent:
        lo, hi, step = key.indices(self.size)
        if step != 1:
            raise ValueError("a lent piece is sliced with step 1 only")
        return Lent(self.lender, self.start + lo, max(0, hi - lo))

    def kernel_views(self) -> tuple[bytes | memoryview, ...]:
        """The octets for a gather write system call only (never read in Python)."""
        return self.lender.kernel_views(self.start, self.size)

    def refused(self, exc: OSError) -> None:
        self.lender.refused(exc)

    def __repr__(self) -> str:
        return f"Lent({self.start}+{self.size})"


class _Joined(Lender):
    """The pieces of a send buffer one segment straddles, a Lent among them
    (a file's next window, or the reply's head before its first block):
    lent on as one, so that the segment is not copied either (a join would
    read the lent octets in user space: their lender's copy). ``parts``:
    Lent pieces and views of immutable bytes, in order."""

    __slots__ = ("parts",)

    def __init__(self, parts: list[Lent | memoryview]) -> None:
        self.parts = parts

    def _spans(self, start: int, n: int) -> list[Lent | memoryview]:
        out: list[Lent | memoryview] = []
        for part in self.parts:
            size = len(part)
            if start >= size:
                start -= size
                continue
            out.append(part[start : start + n])
            n -= min(n, size - start)
            start = 0
            if n <= 0:
                break
        return out

    def read(self, start: int, n: int) -> bytes:
        return b"".join(bytes(p) for p in self._spans(start, n))

    def kernel_views(self, start: int, n: int) -> tuple[bytes | memoryview, ...]:
        views: list[bytes | memoryview] = []
        for p in self._spans(start, n):
            if type(p) is Lent:
                views += p.kernel_views()
            else:
                views.append(p)
        return tuple(views)

    def refused(self, exc: OSError) -> None:
        for p in self.parts:
            if type(p) is Lent:
                p.refused(exc)


# Lent as a plain type: a payload is typed as the bytes it stands for
# (SendBuffer.view), and an identity test against it is no overlap to mypy.
LENT: type = Lent


def join_payloads(payloads: list[bytes]) -> bytes:
    """Payloads in order as one: their octets joined, or, with a Lent among
    them, one Lent (a lender's contiguous pieces as one of its own, else a
    ``_Joined`` of them), never read."""
    if not any(type(p) is LENT for p in payloads):
        return b"".join(payloads)
    first = payloads[0]
    if type(first) is LENT:
        lender, end = first.lender, first.start  # type: ignore[attr-defined]
        for p in payloads:
            if type(p) is not LENT or p.lender is not lender or p.start != end:  # type: ignore[attr-defined]
                break
            end += len(p)
        else:
            return cast("bytes", Lent(lender, first.start, end - first.start))  # type: ignore[attr-defined]
    parts = [cast("Lent", p) if type(p) is LENT else memoryview(p) for p in payloads]
    return cast("bytes", Lent(_Joined(parts), 0, sum(len(p) for p in parts)))


def owned(payload: bytes) -> bytes:
    """``payload`` as octets user space may read: a :class:`Lent` one copied
    by its lender, anything else as it is."""
    return bytes(payload) if type(payload) is LENT else payload


class SendBuffer:
    """Bytes from SND.UNA on: sent-but-unacknowledged, then not yet sent.

    Kept as the pieces the application handed over, not one bytearray: a
    bytearray whose front was deleted copies all it holds when it grows
    again (CPython moves the kept octets back to the start of a new
    allocation), so each append of a bulk sender copied the whole buffer:
    py-spy put 13% of an offloaded download on that line. A ``bytes`` piece
    is kept as it is (immutable, so never copied), the part of it taken as a
    view, as is a part of a view of ``bytes``; anything else is copied once.
    Pieces under ``_SMALL`` octets go into a shared bytearray tail, so small
    writes cost no object each and a segment rarely joins pieces; but a small
    ``bytes`` write into an empty buffer (a keep-alive reply) is kept as it
    is, the tail starting after it. A
    peek inside one piece is a slice (the piece itself when it is all of it).
    A :class:`Lent` piece (a file's pages, zero-copy) is kept as it is and
    never read here: a peek of it is its lender's copy, a view a ``Lent``.
    """

    __slots__ = ("_head", "_pieces", "capacity", "lends", "length")

    def __init__(self, capacity: int) -> None:
        if capacity <= 0:
            raise LocalProtocolError("send buffer capacity must be positive")
        self.capacity = capacity
        self._pieces: deque[bytes | bytearray | memoryview | Lent] = deque()
        self._head = 0  # octets of the first piece already acknowledged
        # Octets held (len() of the buffer; read as an attribute on the hot
        # paths: a __len__ call is Python code, several per segment).
        self.length = 0
        # A Lent piece was ever appended: then every segment's payload is
        # a view (see TcpSender._emit_data), so a lent one is carried on as
        # a Lent whatever its size, never copied by its lender on the way.
        self.lends = False

    def __len__(self) -> int:
        return self.length

    @property
    def space(self) -> int:
        return self.capacity - self.length

    def append(self, data: bytes | bytearray | memoryview | Lent) -> int:
        """Queue as much of ``data`` as fits; return how many bytes were taken."""
        size = len(data)
        n = self.capacity - self.length  # min(), spelt out: once per write
        if size < n:
            n = size
        if n <= 0:
            return 0
        pieces = self._pieces
        if n == size and type(data) is bytes and (n >= _SMALL or not pieces):
            # Kept as it is (immutable): a large write, or a small one into an
            # empty buffer (a keep-alive reply: its segment's payload is then
            # the piece itself, no copy in or out); a small write after it
            # starts the shared tail.
            pieces.append(data)
        elif type(data) is Lent:
            # Never read (see Lender); the rest of the lender's octets the
            # last piece holds (a file's next block) extends it: a segment
            # straddling two pieces is copied (peek).
            tail = pieces[-1] if pieces else None
            if (
                type(tail) is Lent
                and tail.lender is data.lender
                and tail.start + tail.size == data.start
            ):
                pieces[-1] = Lent(data.lender, tail.start, tail.size + n)
            else:
                pieces.append(data if n == size else data[:n])
            self.lends = True
        elif n < _SMALL:
            part = data if n == size else memoryview(data)[:n]
            tail = pieces[-1] if pieces else None
            if type(tail) is bytearray and len(tail) < _TAIL_MAX:
                tail += part
            else:
                pieces.append(bytearray(part))
        elif type(data) is bytes:
            # Immutable, and only part of it taken (all of it is kept as it is
            # above): a view of that part, not a copy.
            pieces.append(memoryview(data)[:n])
        elif (
            type(data) is memoryview
            and type(data.obj) is bytes
            and data.format == "B"
            and data.c_contiguous
        ):
            # A view of immutable bytes (a file block's rest, see
            # adapters/native.py): kept as a view too.
            pieces.append(data[:n])
        else:
            pieces.append(bytes(memoryview(data)[:n]))
        self.length += n
        return n

    def peek(self, offset: int, n: int) -> bytes:
        """``n`` bytes starting ``offset`` bytes after SND.UNA (fewer at the end)."""
        off = offset + self._head
        parts: list[memoryview | bytes] = []
        for piece in self._pieces:
            size = len(piece)
            if off >= size:
                off -= size
                continue
            if not parts and off + n <= size:  # the usual case: inside one piece
                if type(piece) is bytes:
                    return piece if off == 0 and n == size else piece[off : off + n]
                if type(piece) is Lent:
                    return bytes(piece[off : off + n])  # the lender's copy
                return bytes(memoryview(piece)[off : off + n])
            # Across pieces: views of each part (a lent one: its lender's
            # copy), joined in one copy.
            part = (
                bytes(piece[off : off + n])
                if type(piece) is Lent
                else memoryview(piece)[off : off + n]
            )
            parts.append(part)
            n -= len(part)
            off = 0
            if n <= 0:
                break
        return b"".join(parts)

    def view(self, offset: int, n: int) -> bytes:
        """:meth:`peek` without its copy when the ``n`` bytes lie inside one
        immutable piece (``bytes``, or a view of ``bytes``): a read-only
        memoryview of them, typed as the bytes it stands for. For a
        super-segment's payload (TCP's ``gso``), which on its way out is only
        measured, sliced, summed, joined after a header and written (a gather
        write to a TAP): a view does each as its bytes do, and 64 KiB are not
        copied once more per segment (py-spy: 14% of an offloaded download)."""
        off = offset + self._head
        for piece in self._pieces:
            size = len(piece)
            if off >= size:
                off -= size
                continue
            if off + n <= size and type(piece) is not bytearray:
                if type(piece) is Lent:
                    # Never read here: the segment carries the Lent on (see Lender).
                    return cast("bytes", piece[off : off + n])
                return cast("bytes", memoryview(piece)[off : off + n])
            if self.lends:
                joined = self._joined(offset, n)
                if joined is not None:
                    return cast("bytes", joined)
            break
        return self.peek(offset, n)

    def _joined(self, offset: int, n: int) -> Lent | None:
        """:meth:`view` of ``n`` octets over several pieces, a Lent among
        them: one Lent of them all (``_Joined``), never read; None if one
        is the mutable tail (a view of it would stop it growing) or none is
        lent (a join costs less than a gather of small parts)."""
        off = offset + self._head
        parts: list[Lent | memoryview] = []
        lent = False
        total = 0
        for piece in self._pieces:
            size = len(piece)
            if off >= size:
                off -= size
                continue
            if type(piece) is bytearray:
                return None
            if type(piece) is Lent:
                part: Lent | memoryview = piece[off : off + n - total]
                lent = True
            else:
                part = memoryview(piece)[off : off + n - total]
            parts.append(part)
            total += len(part)
            off = 0
            if total >= n:
                break
        return Lent(_Joined(parts), 0, total) if lent else None

    def drop(self, n: int) -> None:
        """The first ``n`` bytes were acknowledged."""
        if n > self.length:
            n = self.length
        self.length -= n
        head = self._head + n
        pieces = self._pieces
        while pieces and head >= len(pieces[0]):
            head -= len(pieces.popleft())
        self._head = head

    def clear(self) -> None:
        self._pieces.clear()
        self._head = self.length = 0


class ReceiveBuffer:
    """In-order bytes waiting for the reader, plus out-of-order pieces.

    Out-of-order data is kept as non-overlapping pieces keyed by stream
    position (bytes since the first data byte), and as a sorted list of merged
    intervals, which are also the SACK blocks of RFC 2018.

    In-order data is a queue of the segments' own payloads, not one growing
    bytearray: appending to a bytearray whose front was read away reallocates
    and copies all it holds (CPython keeps the read-away room until a resize):
    py-spy put a quarter of an offloaded upload's stack-thread samples on that
    line. A read takes the
    first payload as it is when it is all that is asked for (a coalesced
    segment usually is), else joins (one copy). Payloads under ``_SMALL``
    octets are copied into a shared bytearray tail, so memory stays near the
    octets held whatever the segment sizes.
    """

    __slots__ = (
        "_intervals",
        "_pieces",
        "_pos",
        "_ready",
        "_recent",
        "capacity",
        "duplicate",
        "ooo_bytes",
        "readable",
    )

    def __init__(self, capacity: int) -> None:
        if capacity <= 0:
            raise LocalProtocolError("receive buffer capacity must be positive")
        self.capacity = capacity
        self._ready: deque[bytes | bytearray] = deque()
        self.readable = 0  # in-order octets held for the reader (read only)
        self._pos = 0  # stream position of RCV.NXT
        self._pieces: dict[int, bytes] = {}
        self._intervals: list[list[int]] = []  # [start, end) stream positions, sorted
        # Stream positions of the most recently received out-of-order
        # segments, newest first: each marks a block that led an ACK's SACK
        # option (RFC 2018 §4 repeats those, most recent first).
        self._recent: list[int] = []
        self.ooo_bytes = 0
        # What the last insert() already held (RFC 2883 §4: an out-of-order
        # duplicate is reported in a D-SACK block): (offset in the
        # segment, octets) of its first run of held octets, or None.
        self.duplicate: tuple[int, int] | None = None

    @property
    def head(self) -> int:
        """Octets of the first in-order piece (a coalesced run is one piece):
        a read of exactly that many hands the piece over without a copy."""
        ready = self._ready
        return len(ready[0]) if ready else 0

    @property
    def free(self) -> int:
        """RCV.BUFF - RCV.USER: the most window that can be offered from RCV.NXT."""
        return self.capacity - self.readable

    @property
    def has_gaps(self) -> bool:
        return bool(self._intervals)

    def read(self, max_bytes: int) -> bytes:
        ready = self._ready
        if not ready or max_bytes <= 0:
            return b""
        first = ready[0]
        if len(first) >= max_bytes or len(ready) == 1:
            if len(first) <= max_bytes:
                ready.popleft()
                self.readable -= len(first)
                return first if type(first) is bytes else bytes(first)
            ready[0] = first[max_bytes:]
            self.readable -= max_bytes
            return bytes(first[:max_bytes])
        parts: list[bytes | bytearray] = []
        n = 0
        while ready and n < max_bytes:
            chunk = ready.popleft()
            if n + len(chunk) > max_bytes:
                ready.appendleft(chunk[max_bytes - n :])
                chunk = chunk[: max_bytes - n]
            parts.append(chunk)
            n += len(chunk)
        self.readable -= n
        return b"".join(parts)

    def insert(self, offset: int, data: bytes) -> int:
        """Store ``data`` starting ``offset`` bytes after RCV.NXT.

        The caller has trimmed it to the window. Returns by how many bytes
        RCV.NXT advances (0 for an out-of-order piece).
        """
        if type(data) is not bytes:
            data = bytes(data)  # held as is: never a view of a caller's buffer
        if offset == 0 and not self._intervals:
            n = len(data)
            if n:
                self._append(data)
                self.readable += n
                self._pos += n
            return n
        start = self._pos + offset
        end = start + len(data)
        parts = self._uncovered(start, end)
        # The first run of octets held already: before, between or after
        # the parts that are new.
        dup = None
        cur = start
        for s, e in parts:
            if s > cur:
                dup = (cur - start, s - cur)
                break
            cur = e
        else:
            if cur < end:
                dup = (cur - start, end - cur)
        self.duplicate = dup
        for s, e in parts:
            self._pieces[s] = data[s - start : e - start]
            self.ooo_bytes += e - s
            self._add_interval(s, e)
        recent = self._recent
        recent.insert(0, start)
        del recent[_RECENT_KEPT:]
        return self._deliver()

    def _append(self, data: bytes) -> None:
        ready = self._ready
        if len(data) >= _SMALL:
            ready.append(data)
            return
        if ready:
            tail = ready[-1]
            if type(tail) is bytearray and len(tail) < _TAIL_MAX:
                tail += data
                return
        ready.append(bytearray(data))

    def sack_blocks(self, limit: int) -> list[tuple[int, int]]:
        """Up to ``limit`` out-of-order blocks as (offset, end offset) from RCV.NXT.

        RFC 2018 §4: the first block holds the most recently received
        segment; then the blocks most recently reported first (the blocks
        that held earlier segments, newest first), each once; the rest in
        stream order if room remains.
        """
        base = self._pos
        iv = self._intervals
        blocks: list[tuple[int, int]] = []
        used: list[int] = []
        for pos in self._recent:
            if pos < base:
                continue  # delivered since
            i = bisect_right(iv, [pos, _BIG]) - 1
            if i < 0 or iv[i][1] <= pos or i in used:
                continue
            used.append(i)
            blocks.append((iv[i][0] - base, iv[i][1] - base))
            if len(blocks) >= limit:
                return blocks
        for i, (s, e) in enumerate(iv):
            if i not in used:
                blocks.append((s - base, e - base))
                if len(blocks) >= limit:
                    break
        return blocks

    def first_gap_end(self) -> int | None:
        """Offset from RCV.NXT of the first out-of-order byte, if any."""
        return self._intervals[0][0] - self._pos if self._intervals else None

    def _uncovered(self, start: int, end: int) -> list[tuple[int, int]]:
        parts: list[tuple[int, int]] = []
        cur = start
        for s, e in self._intervals:
            if e <= cur:
                continue
            if s >= end:
                break
            if s > cur:
                parts.append((cur, s))
            cur = max(cur, e)
            if cur >= end:
                break
        if cur < end:
            parts.append((cur, end))
        return parts

    def _add_interval(self, s: int, e: int) -> None:
        iv = self._intervals
        i = bisect_left(iv, [s, e])
        iv.insert(i, [s, e])
        # Merge with touching neighbours (pieces never overlap, so only
        # adjacency needs joining).
        if i > 0 and iv[i - 1][1] == s:
            iv[i - 1][1] = e
            del iv[i]
            i -= 1
        if i + 1 < len(iv) and iv[i][1] == iv[i + 1][0]:
            iv[i][1] = iv[i + 1][1]
            del iv[i + 1]

    def _deliver(self) -> int:
        iv = self._intervals
        if not iv or iv[0][0] != self._pos:
            return 0
        s, e = iv.pop(0)
        pieces = self._pieces
        pos = s
        while pos < e:
            chunk = pieces.pop(pos)
            self._append(chunk)
            self.readable += len(chunk)
            pos += len(chunk)
        self.ooo_bytes -= e - s
        self._pos = e
        return e - s

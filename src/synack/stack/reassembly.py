"""IPv4 fragment reassembly (RFC 791 §3.2, RFC 815) with limits and a timeout.

Overlapping fragments are the basis of several evasion and denial attacks
(RFC 1858, the "teardrop" family). The safe rule used here (the one RFC 5722
made mandatory for IPv6): a fragment that overlaps data already received is
accepted only when it repeats those octets exactly (a retransmitted
duplicate); any other overlap discards the whole datagram.

Layer: stack. Imports synack.wire.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address

from synack.wire.ipv4 import MIN_HEADER_LEN, Ipv4Packet

Key = tuple[IPv4Address, IPv4Address, int, int]  # src, dst, proto, ident

MAX_DATAGRAM = 65535 - 20  # largest payload an IPv4 total length can describe
# What one held fragment costs besides its octets (Python object, list slot),
# charged so that a flood of 8-octet fragments is charged what it costs.
FRAGMENT_OVERHEAD = 64
# Fragments one datagram may hold. A 64 KiB datagram is 45 fragments on
# Ethernet, 118 over a 576-octet path; FreeBSD's maxfragsperpacket is 16.
# The cap also bounds the overlap checks (linear in the fragments held).
MAX_FRAGMENTS = 256


@dataclass(slots=True)
class _Partial:
    src: IPv4Address
    deadline: float
    pieces: list[tuple[int, bytes]] = field(default_factory=list)  # disjoint (start, octets)
    have: list[tuple[int, int]] = field(default_factory=list)  # sorted, merged [start, end)
    charge: int = 0  # octets held plus FRAGMENT_OVERHEAD per piece
    total: int | None = None  # payload length, known once the last fragment came
    first: Ipv4Packet | None = None  # offset-0 fragment (its header is the datagram's)


class Reassembler:
    """Partial datagrams, charged by what they hold (issue 14: charging the
    highest offset let 17 fragments at offset 64000 fill 1 MiB).

    Limits: ``max_datagrams`` and ``max_bytes`` in all, ``per_source`` and
    ``per_source_bytes`` for one source address. When a limit is reached the
    oldest incomplete datagram (of that source, for a source's limit) is
    evicted, so new datagrams always get in: a full table of junk ages out
    under new traffic instead of refusing it (Linux evicts the same way).
    """

    def __init__(
        self,
        *,
        timeout: float = 30.0,
        max_datagrams: int = 64,
        max_bytes: int = 1 << 20,
        per_source: int = 16,
        per_source_bytes: int | None = None,
    ) -> None:
        self.timeout = timeout  # Linux ipfrag_time
        self.max_datagrams = max_datagrams
        self.max_bytes = max_bytes  # all partial datagrams together (Linux ipfrag_high_thresh)
        self.per_source = per_source
        # One source may hold a quarter of the memory: spoofing many sources
        # is needed to fill it, and then the oldest-first eviction applies.
        self.per_source_bytes = per_source_bytes if per_source_bytes is not None else max_bytes // 4
        self._partials: dict[Key, _Partial] = {}  # insertion order: oldest first
        self._sources: dict[IPv4Address, dict[Key, None]] = {}  # per source, oldest first
        self._source_bytes: dict[IPv4Address, int] = {}
        self._bytes = 0
        self.counters: dict[str, int] = {}

    def _count(self, key: str) -> None:
        self.counters[key] = self.counters.get(key, 0) + 1

    def __len__(self) -> int:
        return len(self._partials)

    @property
    def bytes_held(self) -> int:
        """What the partial datagrams are charged in all."""
        return self._bytes

    def _forget(self, key: Key) -> _Partial:
        p = self._partials.pop(key)
        self._bytes -= p.charge
        src = p.src
        keys = self._sources[src]
        del keys[key]
        if keys:
            self._source_bytes[src] -= p.charge
        else:
            del self._sources[src]
            del self._source_bytes[src]
        return p

    def _drop(self, key: Key, reason: str) -> None:
        self._forget(key)
        self._count(reason)

    def _charge(self, key: Key, p: _Partial, amount: int) -> bool:
        """Make room for ``amount`` more octets for ``p``, evicting the oldest
        other datagrams (the source's own first when it is over its share).
        False if ``p`` alone would exceed a limit."""
        src = p.src
        if p.charge + amount > min(self.max_bytes, self.per_source_bytes):
            return False
        while self._source_bytes[src] + amount > self.per_source_bytes:
            self._drop(next(k for k in self._sources[src] if k != key), "reasm-evicted-source")
        while self._bytes + amount > self.max_bytes:
            self._drop(next(k for k in self._partials if k != key), "reasm-evicted")
        p.charge += amount
        self._bytes += amount
        self._source_bytes[src] += amount
        return True

    def add(self, pkt: Ipv4Packet, now: float) -> Ipv4Packet | None:
        """Add one fragment; the whole datagram when it completes, else None."""
        key: Key = (pkt.src, pkt.dst, pkt.proto, pkt.ident)
        start = pkt.frag_offset * 8
        payload = pkt.payload
        end = start + len(payload)
        if end > MAX_DATAGRAM or (pkt.more_fragments and len(payload) % 8):
            # Non-final fragments carry a multiple of 8 octets (RFC 791); and
            # no datagram is longer than 65535 (the "ping of death").
            self._count("reasm-bad-fragment")
            if key in self._partials:
                self._drop(key, "reasm-discarded")
            return None
        p = self._partials.get(key)
        if p is None:
            src = pkt.src
            mine = self._sources.get(src)
            if mine is not None and len(mine) >= self.per_source:
                # One source's oldest goes first: it cannot push others out.
                self._drop(next(iter(mine)), "reasm-evicted-source")
            if len(self._partials) >= self.max_datagrams:
                # The oldest incomplete datagram: the least likely to complete.
                self._drop(next(iter(self._partials)), "reasm-evicted")
            p = _Partial(src, deadline=now + self.timeout)
            self._partials[key] = p
            self._sources.setdefault(src, {})[key] = None
            self._source_bytes.setdefault(src, 0)
        if not pkt.more_fragments:
            if (p.total is not None and p.total != end) or any(e > end for _, e in p.have):
                self._drop(key, "reasm-inconsistent")
                return None
            p.total = end
        elif p.total is not None and end > p.total:
            self._drop(key, "reasm-inconsistent")
            return None
        # Overlap check against what we hold: only exact repeats are allowed.
        for s, data in p.pieces:
            lo, hi = max(s, start), min(s + len(data), end)
            if lo < hi and data[lo - s : hi - s] != payload[lo - start : hi - start]:
                self._drop(key, "reasm-overlap")
                return None
        # Keep only the octets not held yet (the gaps of ``have`` in [start, end)).
        new: list[tuple[int, bytes]] = []
        at = start
        for s, e in p.have:
            if e <= at:
                continue
            if s >= end:
                break
            if s > at:
                new.append((at, payload[at - start : s - start]))
            at = max(at, e)
        if at < end:
            new.append((at, payload[at - start :]))
        if new:
            if len(p.pieces) + len(new) > MAX_FRAGMENTS:
                self._drop(key, "reasm-too-many-fragments")
                return None
            if not self._charge(key, p, sum(len(d) + FRAGMENT_OVERHEAD for _, d in new)):
                self._drop(key, "reasm-memory")
                return None
            p.pieces.extend(new)
            p.have = _merge(p.have, (start, end))
        else:
            self._count("reasm-duplicate")
        if start == 0:
            p.first = pkt
        if p.total is not None and p.have == [(0, p.total)] and p.first is not None:
            first = p.first
            whole = bytearray(p.total)
            for s, piece in p.pieces:
                whole[s : s + len(piece)] = piece
            self._forget(key)
            self._count("reasm-ok")
            return replace(first, payload=bytes(whole), more_fragments=False)
        return None

    def get_timer(self) -> float | None:
        if not self._partials:
            return None
        # Deadlines are creation time + timeout: the oldest is due first.
        return next(iter(self._partials.values())).deadline

    def handle_timer(self, now: float) -> list[Ipv4Packet]:
        """Drop timed-out datagrams; returns their first fragments (for an
        ICMP time-exceeded, which RFC 792 sends only when fragment 0 came)."""
        firsts: list[Ipv4Packet] = []
        for key in [k for k, p in self._partials.items() if p.deadline <= now]:
            first = self._partials[key].first
            if first is not None:
                firsts.append(first)
            self._drop(key, "reasm-timeout")
        return firsts


def _merge(have: list[tuple[int, int]], new: tuple[int, int]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for a, b in sorted([*have, new]):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def fragment(pkt: Ipv4Packet, mtu: int) -> list[Ipv4Packet]:
    """Split ``pkt`` so each fragment's total length fits ``mtu`` (RFC 791 §3.2)."""
    header = MIN_HEADER_LEN + len(pkt.options)
    if header + len(pkt.payload) <= mtu:
        return [pkt]
    step = (mtu - header) // 8 * 8
    if step <= 0:
        raise ValueError(f"mtu {mtu} too small to fragment")
    out = []
    payload = pkt.payload
    base = pkt.frag_offset * 8
    for off in range(0, len(payload), step):
        chunk = payload[off : off + step]
        last = off + step >= len(payload)
        out.append(
            replace(
                pkt,
                payload=chunk,
                dont_fragment=False,
                more_fragments=pkt.more_fragments or not last,
                frag_offset=(base + off) // 8,
                # Options are copied into every fragment only when their
                # copy flag says so; synack sends none, so keep it simple.
                options=pkt.options if off == 0 else b"",
            )
        )
    return out

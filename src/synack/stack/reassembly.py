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

from synack.wire.ipv4 import Ipv4Packet

Key = tuple[IPv4Address, IPv4Address, int, int]  # src, dst, proto, ident

MAX_DATAGRAM = 65535 - 20  # largest payload an IPv4 total length can describe


@dataclass(slots=True)
class _Partial:
    deadline: float
    data: bytearray = field(default_factory=bytearray)
    have: list[tuple[int, int]] = field(default_factory=list)  # sorted, merged [start, end)
    total: int | None = None  # payload length, known once the last fragment came
    first: Ipv4Packet | None = None  # offset-0 fragment (its header is the datagram's)


class Reassembler:
    def __init__(
        self, *, timeout: float = 30.0, max_datagrams: int = 64, max_bytes: int = 1 << 20
    ) -> None:
        self.timeout = timeout  # Linux ipfrag_time
        self.max_datagrams = max_datagrams
        self.max_bytes = max_bytes  # all partial datagrams together (Linux ipfrag_high_thresh)
        self._partials: dict[Key, _Partial] = {}
        self._bytes = 0
        self.counters: dict[str, int] = {}

    def _count(self, key: str) -> None:
        self.counters[key] = self.counters.get(key, 0) + 1

    def __len__(self) -> int:
        return len(self._partials)

    def _drop(self, key: Key, reason: str) -> None:
        p = self._partials.pop(key)
        self._bytes -= len(p.data)
        self._count(reason)

    def add(self, pkt: Ipv4Packet, now: float) -> Ipv4Packet | None:
        """Add one fragment; the whole datagram when it completes, else None."""
        key: Key = (pkt.src, pkt.dst, pkt.proto, pkt.ident)
        start = pkt.frag_offset * 8
        end = start + len(pkt.payload)
        if end > MAX_DATAGRAM or (pkt.more_fragments and len(pkt.payload) % 8):
            # Non-final fragments carry a multiple of 8 octets (RFC 791); and
            # no datagram is longer than 65535 (the "ping of death").
            self._count("reasm-bad-fragment")
            if key in self._partials:
                self._drop(key, "reasm-discarded")
            return None
        p = self._partials.get(key)
        if p is None:
            if len(self._partials) >= self.max_datagrams:
                # Evict the one closest to its timeout: it is the least likely
                # to complete.
                oldest = min(self._partials, key=lambda k: self._partials[k].deadline)
                self._drop(oldest, "reasm-evicted")
            p = _Partial(deadline=now + self.timeout)
            self._partials[key] = p
        if not pkt.more_fragments:
            if (p.total is not None and p.total != end) or any(e > end for _, e in p.have):
                self._drop(key, "reasm-inconsistent")
                return None
            p.total = end
        elif p.total is not None and end > p.total:
            self._drop(key, "reasm-inconsistent")
            return None
        # Overlap check against what we have.
        for s, e in p.have:
            lo, hi = max(s, start), min(e, end)
            if lo < hi and p.data[lo:hi] != pkt.payload[lo - start : hi - start]:
                self._drop(key, "reasm-overlap")
                return None
        if end > len(p.data):
            grow = end - len(p.data)
            if self._bytes + grow > self.max_bytes:
                self._drop(key, "reasm-memory")
                return None
            p.data.extend(bytes(grow))
            self._bytes += grow
        p.data[start:end] = pkt.payload
        if start == 0:
            p.first = pkt
        p.have = _merge(p.have, (start, end))
        if p.total is not None and p.have == [(0, p.total)] and p.first is not None:
            first = p.first
            data = bytes(p.data[: p.total])
            self._bytes -= len(p.data)
            del self._partials[key]
            self._count("reasm-ok")
            return replace(first, payload=data, more_fragments=False)
        return None

    def get_timer(self) -> float | None:
        if not self._partials:
            return None
        return min(p.deadline for p in self._partials.values())

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
    header = 20 + len(pkt.options)
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

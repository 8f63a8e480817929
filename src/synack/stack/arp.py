"""The ARP cache (RFC 826) with Linux-like ageing and a spoofing defence.

Sans-IO: the cache decides, the host sends. Entries are REACHABLE for
``reachable_time`` after a confirmation (a reply to our request), then STALE:
still used, like Linux's neighbour table, but re-confirmed by a unicast probe
when used, and forgotten after ``gc_time`` without confirmation. The
:class:`~synack.stack.interface.Interface` sends what it decides.

A binding (ip -> MAC) changes only on evidence (docs/arp-defence.md): a reply
to a request we sent, from the address we asked about, fills an INCOMPLETE
entry; a different MAC for a known address (a "claim": any reply, gratuitous
request or request for us carrying it) never replaces the entry at once. The
old MAC is probed by unicast first (RFC 5227 §2.4's defence seen from the
other side: the holder of an address gets the chance to defend it); if it
answers, the claimant is refused, and only when every probe goes unanswered
does the claimant get the entry.

Layer: stack. Imports only the standard library.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass, field
from ipaddress import IPv4Address


class NeighbourState(enum.Enum):
    INCOMPLETE = "incomplete"  # request sent, no answer yet
    REACHABLE = "reachable"  # confirmed within reachable_time
    STALE = "stale"  # older; usable, re-probed on use


# For get_timer (asked after every batch): NeighbourState.X is read through the
# enum metaclass's slow attribute hook on CPython 3.11 (synack.tcp.states).
_INCOMPLETE = NeighbourState.INCOMPLETE


@dataclass(frozen=True, slots=True)
class ArpPolicy:
    """Which ARP information is refused (spoofing defence).

    ``accept_unsolicited``: create an entry from a reply nobody asked for
    (Linux's ``arp_accept``; off by default, as there).
    ``allow_override_fresh``: let a reply or request change the MAC of an entry
    confirmed less than ``reachable_time`` ago (an ARP-spoofing signature).
    """

    accept_unsolicited: bool = False
    allow_override_fresh: bool = False


@dataclass(slots=True)
class Neighbour:
    ip: IPv4Address
    state: NeighbourState
    mac: bytes | None = None
    confirmed: float = 0.0  # when a reply last confirmed the MAC
    # Resolution (INCOMPLETE) or re-probe (STALE): when the next request is due.
    retry_at: float | None = None
    tries: int = 0
    # A different MAC claiming this address, waiting for the probes of the
    # old one to fail (then it is adopted) or to be answered (then refused).
    claim: bytes | None = None
    pending: deque[tuple[bytes, int]] = field(default_factory=deque)  # (ip packet, ethertype)


class ArpDecision(enum.Enum):
    ACCEPTED = "accepted"
    IGNORED = "ignored"  # not about anything we care for
    REFUSED_UNSOLICITED = "unsolicited"
    REFUSED_CONFLICT = "conflict"
    PROBING = "probing"  # a claim for a new MAC: the old one is being probed


@dataclass(frozen=True, slots=True)
class ArpTimings:
    reachable_time: float = 30.0  # Linux base_reachable_time
    gc_time: float = 300.0  # a STALE entry unconfirmed this long is forgotten
    retry_interval: float = 1.0  # Linux retrans_time
    delay_first_probe: float = 5.0  # Linux delay_first_probe_time
    max_tries: int = 3  # Linux mcast_solicit / ucast_solicit
    pending_limit: int = 64  # packets queued per unresolved address (Linux unres_qlen-ish)
    max_entries: int = 1024


class ArpCache:
    """Neighbour table of one interface. No I/O: requests to send are collected
    in :attr:`requests` (target ip, unicast MAC or None for broadcast) and the
    host drains them."""

    def __init__(self, timings: ArpTimings | None = None, policy: ArpPolicy | None = None) -> None:
        self.timings = timings or ArpTimings()
        self.policy = policy or ArpPolicy()
        self.entries: dict[IPv4Address, Neighbour] = {}
        self.requests: list[tuple[IPv4Address, bytes | None]] = []
        # Claims whose probes went unanswered: (ip, old mac, new mac), for the
        # interface to count and drain.
        self.moved: list[tuple[IPv4Address, bytes, bytes]] = []

    def state(self, ip: IPv4Address, now: float) -> NeighbourState | None:
        n = self.entries.get(ip)
        if n is None:
            return None
        if n.state is NeighbourState.REACHABLE and now - n.confirmed >= self.timings.reachable_time:
            n.state = NeighbourState.STALE
        return n.state

    def resolve(self, ip: IPv4Address, now: float) -> bytes | None:
        """The MAC to send to, or None (then :meth:`enqueue` the packet).

        Using a STALE entry schedules a unicast re-probe (Linux DELAY/PROBE);
        a missing answer to it demotes the entry to INCOMPLETE after the tries.
        """
        state = self.state(ip, now)
        n = self.entries.get(ip)
        if n is None or state is NeighbourState.INCOMPLETE:
            return None
        if state is NeighbourState.STALE and n.retry_at is None:
            # Linux's DELAY state: give the entry delay_first_probe_time to be
            # confirmed (by a reply or a request from it) before probing.
            n.retry_at = now + self.timings.delay_first_probe
            n.tries = 0
        return n.mac

    def enqueue(self, ip: IPv4Address, packet: bytes, ethertype: int, now: float) -> bool:
        """Queue a packet until ``ip`` resolves. False (and nothing queued) when
        the per-address queue or the table is full: the caller counts the drop."""
        n = self.entries.get(ip)
        if n is None:
            if len(self.entries) >= self.timings.max_entries and not self._evict(now):
                return False
            # The first request goes out at once; retries follow on the timer.
            n = Neighbour(
                ip, NeighbourState.INCOMPLETE, retry_at=now + self.timings.retry_interval, tries=1
            )
            self.entries[ip] = n
            self.requests.append((ip, None))
        if len(n.pending) >= self.timings.pending_limit:
            return False
        n.pending.append((packet, ethertype))
        return True

    def _evict(self, now: float) -> bool:
        # Only entries with nothing queued and no fresh confirmation may go.
        for ip, n in self.entries.items():
            if not n.pending and self.state(ip, now) is not NeighbourState.REACHABLE:
                del self.entries[ip]
                return True
        return False

    def learn(
        self, ip: IPv4Address, mac: bytes, now: float, *, reply: bool, for_us: bool
    ) -> tuple[ArpDecision, list[tuple[bytes, int]]]:
        """Take (ip, mac) from a received ARP packet.

        ``reply``: it was an ARP reply; ``for_us``: it was addressed to our IP
        (a request for us, or a reply to us). Returns the decision and the
        packets now ready to go to ``mac``.
        """
        n = self.entries.get(ip)
        if n is None:
            # RFC 826: a request for us may add its sender ("merge" then add),
            # since we are about to talk to it anyway. A reply we never asked
            # for is the classic spoofing vector: refused unless allowed.
            if reply and not self.policy.accept_unsolicited:
                return ArpDecision.REFUSED_UNSOLICITED, []
            if not for_us and not reply:
                return ArpDecision.IGNORED, []
            if len(self.entries) >= self.timings.max_entries and not self._evict(now):
                return ArpDecision.IGNORED, []
            self.entries[ip] = Neighbour(
                ip, NeighbourState.REACHABLE if reply else NeighbourState.STALE, mac, now
            )
            if not reply:
                # A request proves nothing about reachability: Linux makes such
                # entries STALE, to be confirmed on first use.
                self.entries[ip].confirmed = now - self.timings.reachable_time
            return ArpDecision.ACCEPTED, []
        state = self.state(ip, now)
        # We asked about ``ip`` (a broadcast request while INCOMPLETE, a
        # unicast probe while STALE) and nobody has answered yet.
        asked = n.retry_at is not None and n.tries > 0
        if n.mac is None:
            # INCOMPLETE: a reply to our request, or a request for us from the
            # address we are resolving (RFC 826: it is about to get our reply),
            # fills the entry; the first answer wins, a later different one is
            # then a conflict. Anything else (a reply to someone else, a
            # gratuitous request) is not an answer to us.
            if not for_us or (reply and not asked and not self.policy.accept_unsolicited):
                return ArpDecision.REFUSED_UNSOLICITED, []
            return self._confirm(n, mac, now)
        if n.mac == mac:
            if n.claim is not None:
                # The old MAC is alive (it answered a probe or speaks): the
                # claimant is refused; the caller reports it with its MAC.
                n.claim = None
                self._confirmed(n, now)
                return ArpDecision.REFUSED_CONFLICT, []
            if (reply and for_us and asked) or (not reply and n.retry_at is not None):
                # A reply to our probe, or (Linux's DELAY) the neighbour spoke
                # to us while the entry awaited confirmation.
                return self._confirm(n, mac, now)
            # Same MAC, unasked: nothing changes (an unsolicited reply does
            # not make an entry REACHABLE: it is no evidence of reachability).
            return ArpDecision.IGNORED, []
        # A different MAC for a known address: a claim.
        if self.policy.allow_override_fresh:
            # RFC 826 as written: the newest information wins.
            return self._confirm(n, mac, now)
        if state is NeighbourState.REACHABLE:
            # Confirmed less than reachable_time ago: an ARP-spoofing signature.
            return ArpDecision.REFUSED_CONFLICT, []
        if n.claim is not None:
            # One claim at a time: a second claimant (or the same one again)
            # waits for the first to be decided. The same one is not news.
            if n.claim == mac:
                return ArpDecision.IGNORED, []
            return ArpDecision.REFUSED_CONFLICT, []
        # STALE: probe the old MAC by unicast, at once, max_tries times.
        n.claim = mac
        n.tries = 1
        n.retry_at = now + self.timings.retry_interval
        self.requests.append((ip, n.mac))
        return ArpDecision.PROBING, []

    def _confirmed(self, n: Neighbour, now: float) -> None:
        n.state = NeighbourState.REACHABLE
        n.confirmed = now
        n.retry_at = None
        n.tries = 0

    def _confirm(
        self, n: Neighbour, mac: bytes, now: float
    ) -> tuple[ArpDecision, list[tuple[bytes, int]]]:
        n.mac = mac
        n.claim = None
        self._confirmed(n, now)
        ready = list(n.pending)
        n.pending.clear()
        return ArpDecision.ACCEPTED, ready

    def get_timer(self) -> float | None:
        deadline: float | None = None
        for n in self.entries.values():
            t = n.retry_at
            if t is None and n.state is not _INCOMPLETE:
                # Ageing: a STALE entry expires gc_time after its confirmation.
                t = n.confirmed + self.timings.gc_time
            if t is not None and (deadline is None or t < deadline):
                deadline = t
        return deadline

    def handle_timer(self, now: float) -> list[tuple[IPv4Address, int]]:
        """Send due (re)tries; give up on exhausted ones. Returns (ip, packets
        dropped) for each address that failed to resolve."""
        failed: list[tuple[IPv4Address, int]] = []
        for ip in list(self.entries):
            n = self.entries[ip]
            state = self.state(ip, now)
            if n.retry_at is not None and n.retry_at <= now:
                if n.tries >= self.timings.max_tries:
                    if n.claim is not None and n.mac is not None:
                        # The old MAC answered none of the probes: the host
                        # moved (new NIC, failover). The claimant gets the
                        # entry, STALE: it is confirmed on first use.
                        self.moved.append((ip, n.mac, n.claim))
                        n.mac, n.claim = n.claim, None
                        n.state = NeighbourState.STALE
                        n.confirmed = now - self.timings.reachable_time
                        n.retry_at = None
                        n.tries = 0
                        continue
                    if state is NeighbourState.INCOMPLETE:
                        failed.append((ip, len(n.pending)))
                    # An unanswered probe of a STALE entry: forget it (Linux
                    # moves PROBE -> FAILED), the next use resolves afresh.
                    del self.entries[ip]
                    continue
                n.tries += 1
                n.retry_at = now + self.timings.retry_interval
                unicast = n.mac if state is NeighbourState.STALE else None
                self.requests.append((ip, unicast))
            elif (
                n.retry_at is None
                and state is not NeighbourState.INCOMPLETE
                and now >= n.confirmed + self.timings.gc_time
            ):
                del self.entries[ip]
        return failed

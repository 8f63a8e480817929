"""The SYN-flood defence: budgets, proven sources, and a SYN answered from its raw bytes.

A spoofed SYN flood is won by the side whose cost per SYN is lower. A SYN to a
listener whose half-open queue is full (a flood is on) is therefore handled
here, from the frame's octets at fixed offsets (synack.wire's layouts), before
Ethernet, IPv4 or TCP is parsed into objects and without any state kept
(RFC 4987 §3.6, SYN cookies): the cheap checks (our MAC and address, a sane
source, a route), then the budgets, then the IPv4 and TCP checksums and the
options; then it is answered by a cookie SYN-ACK packed whole from a
template, both checksums summed from the fields' values (RFC 1071 / RFC 1624
arithmetic: a constant part precomputed per option shape plus the ports,
numbers and addresses). The budgets come before the checksums because a
spoofer makes valid checksums as easily as bad ones. The answer is byte for
byte the SYN-ACK :meth:`SynCookies.syn_ack` would build, so the handshake's
ACK completes the usual way (tests/stack/test_synflood.py).

The budgets, once the queue is full (counted when they refuse):

- per source: a :class:`~synack.core.ratelimit.HashedBuckets` bucket of
  ``syn_flood_per_source`` a second, picked by a keyed hash of the address.
  Random spoofed sources spread over every bucket, so a never-seen client's
  first SYN finds its bucket nearly full; one real source hammering drains
  only its own (``tcp-syn-flood-source-dropped``).
- all unproven sources together: ``syn_flood_per_second``, high enough that
  the 48k/s flood issue 14 measured is answered in full, a cap on the CPU a
  faster one takes (``tcp-syn-flood-dropped``). Sources that completed a
  handshake with us (the last 4,096) skip it: a spoofed source never
  completes one.

Bad SYNs within the budgets are dropped and counted here, never answered
(``tcp-bad-checksum``, ``tcp-bad-data-offset``, ``tcp-bad-option``,
``tcp-bad-port``). A SYN this path does not take (an IPv4 header with
options, a fragment, another MAC or address, an odd source, no route, a
listener bound to another address, cookies off, or a proven source, whose
SYN may be for a connection it has: a challenge ACK, a TIME-WAIT reopened)
goes the ordinary way, which refuses and counts what is wrong and applies
the same budgets before parsing TCP; so does a retransmitted SYN of a
half-open connection (its own SYN-ACK again, not a cookie). Not looked up
here: the connections and TIME-WAIT records of sources not proven (active
opens have no listener on their port; a proven source's are looked up).

Layer: stack. Imports synack.core, synack.wire, synack.tcp.config and lower
stack modules (config, endpoints, ipv4, syncookies).
"""

from __future__ import annotations

import hashlib
import struct
from collections import Counter
from ipaddress import IPv4Address

from synack.core.ratelimit import HashedBuckets, TokenBucket
from synack.stack.config import ANY, HostConfig
from synack.stack.endpoints import TcpListener
from synack.stack.ipv4 import Ipv4
from synack.stack.syncookies import COOKIE_PERIOD, TS_OPT_MASK, SynCookies, mss_index, ts_bits
from synack.tcp.config import TcpConfig
from synack.tcp.seq import SEQ_MASK
from synack.wire import ethernet as weth
from synack.wire import ipv4 as wip
from synack.wire import tcp as wtcp
from synack.wire.checksum import finish, is_valid, le_residue, ones_sum
from synack.wire.errors import MalformedPacket

PROVEN_SOURCES = 4096
OFFERS_KEPT = 1024
SOURCE_SLOTS = 4096

# Offsets in a frame whose IPv4 header has no options (the only frames the
# host's early classification passes here).
_IP = weth.HEADER_LEN
_TOTAL_AT = _IP + wip.TOTAL_LENGTH_AT
_SRC_AT = _IP + wip.SRC_AT
_DST_AT = _IP + wip.DST_AT
_L4 = wip.ETH_IPV4_HEADER_LEN
_MAC_END = weth.DST_AT + 6
_TCP_MIN = wtcp.MIN_HEADER_LEN
_DOFF_AT = _L4 + wtcp.DATA_OFFSET_AT
_OPTS_AT = _L4 + _TCP_MIN
_DPORT_AT = _L4 + wtcp.DST_PORT_AT
_SEQ_AT = _L4 + wtcp.SEQ_AT
_ISN_END = _SEQ_AT + 4
_IP_FIELDS = struct.Struct("!HHHBBHII")  # total length .. destination (after version, TOS)
_PORTS = struct.Struct("!HHI")  # source port, destination port, sequence number
_SYN_ACK = int(wtcp.TcpFlags.SYN | wtcp.TcpFlags.ACK)
_PROTO_TCP = wip.PROTO_TCP
_DF = wip.FLAG_DF
# The cookie's MSS index of the MSS values SYNs usually carry.
_MSS_INDEX = {m: mss_index(m) for m in (None, 536, 1220, 1360, 1400, 1440, 1448, 1460, 8960)}
_SEQ_HALF = 1 << 31  # sequence comparison (RFC 1982): a difference under 2**31 is ahead
_MIN_TOTAL = wip.MIN_HEADER_LEN + wtcp.MIN_HEADER_LEN
_NO_MAC = bytes(6)  # the Ethernet header is cut off when the packet waits for ARP
# The options Linux puts on a SYN (MSS, SACK-permitted, timestamps, window
# scale), read at fixed places when the layout is exactly this one.
_LINUX_SYN = (b"\x02\x04", b"\x04\x02\x08\x0a", b"\x01\x03\x03")
_LINUX_SYN_OPTS = struct.Struct("!2sH4sII3sB")


_Offer = tuple[int | None, int | None, bool, int | None]


def _offered(opts: bytes) -> _Offer:
    """(MSS, window scale, SACK-permitted, TSval) a SYN offers;
    MalformedPacket as :func:`synack.wire.tcp.parse_options` raises it."""
    if not opts:
        return None, None, False, None
    if len(opts) == 20:
        kind_mss, mss, sack_ts, tsval, _tsecr, nop_ws, wscale = _LINUX_SYN_OPTS.unpack(opts)
        if kind_mss == _LINUX_SYN[0] and sack_ts == _LINUX_SYN[1] and nop_ws == _LINUX_SYN[2]:
            return mss, wscale, True, tsval
    o = wtcp.parse_options(opts)
    return o.mss, o.wscale, o.sack_permitted, None if o.timestamps is None else o.timestamps[0]


class _Shape:
    """A cookie SYN-ACK frame for one host, listener config and option shape:
    one struct that packs Ethernet, IPv4 and TCP headers whole (the constant
    octets as fields), and the sums of their constant parts."""

    __slots__ = ("bits", "config", "const", "ip_const", "pack")

    def __init__(
        self, config: TcpConfig, ts: bool, wscale: int | None, sack: bool, eth_tail: bytes, ttl: int
    ) -> None:
        self.config = config
        # The options SynCookies.syn_ack answers such a SYN with, from the one
        # option builder, with zero timestamps to find where they go.
        if ts:
            self.bits, wscale_ok, sack_ok = ts_bits(config, wscale, sack)
            options = wtcp.TcpOptions(
                mss=config.mss,
                wscale=config.rcv_wscale if wscale_ok else None,
                sack_permitted=sack_ok,
                timestamps=(0, 0),
            )
        else:
            self.bits = 0
            options = wtcp.TcpOptions(mss=config.mss)
        raw = wtcp.build_options(options)
        hlen = _TCP_MIN + len(raw)
        total = wip.MIN_HEADER_LEN + hlen
        off_flags = (hlen << 10) | _SYN_ACK  # data offset (words) in the high nibble
        window = min(65535, config.receive_buffer)
        ttl_proto = (ttl << 8) | _PROTO_TCP
        at = raw.find(b"\x08\x0a") + 2 if ts else len(raw)
        before, after = raw[:at], raw[at + 8 :] if ts else b""
        fmt = "!6s8sBBHHHHHII" + f"HHIIHHHH{len(before)}s" + (f"II{len(after)}s" if ts else "")
        packer = struct.Struct(fmt).pack
        version_ihl = wip.VERSION_IHL

        def pack(
            mac: bytes,
            ident: int,
            ip_csum: int,
            ours: int,
            theirs: int,
            sp: int,
            dp: int,
            seq: int,
            ack: int,
            csum: int,
            tsval: int,
            tsecr: int,
        ) -> bytes:
            if ts:
                return packer(
                    mac, eth_tail, version_ihl, 0, total, ident, _DF, ttl_proto, ip_csum, ours,
                    theirs, sp, dp, seq, ack, off_flags, window, csum, 0, before, tsval, tsecr,
                    after,
                )  # fmt: skip
            return packer(
                mac, eth_tail, version_ihl, 0, total, ident, _DF, ttl_proto, ip_csum, ours,
                theirs, sp, dp, seq, ack, off_flags, window, csum, 0, before,
            )  # fmt: skip

        self.pack = pack
        # The constant parts of the checksums (RFC 1071): the IPv4 header's
        # constant words; the TCP header's constant words and options, and
        # the pseudo-header's protocol and length.
        self.ip_const = (version_ihl << 8) + total + _DF + ttl_proto
        self.const = off_flags + window + ones_sum(raw) + _PROTO_TCP + hlen


class SynFlood:
    """One host's SYN-flood budgets and its stateless answer (module docstring)."""

    __slots__ = (
        "_bcast",
        "_cookies",
        "_eth_tail",
        "_half_opens",
        "_hop_at",
        "_ip",
        "_mac",
        "_mask",
        "_net",
        "_offers",
        "_shapes",
        "_ttl",
        "counters",
        "per_source",
        "proven",
        "shared",
    )

    def __init__(
        self,
        config: HostConfig,
        ip: Ipv4,
        cookies: SynCookies | None,
        isn_secret: bytes,
        counters: Counter[str],
    ) -> None:
        self._ip = ip
        self._cookies = cookies
        self._mac = config.mac
        self._eth_tail = config.mac + weth.ETHERTYPE_IPV4.to_bytes(2, "big")
        self._ttl = config.ttl
        network = config.interface.network
        self._mask = int(network.netmask)
        self._net = int(network.network_address)
        self._bcast = int(network.broadcast_address)
        self.counters = counters
        self.shared = TokenBucket(config.syn_flood_per_second, config.syn_flood_burst)
        seed = int.from_bytes(hashlib.blake2s(b"syn-sources" + isn_secret).digest()[:8])
        self.per_source = HashedBuckets(
            config.syn_flood_per_source,
            config.syn_flood_source_burst,
            slots=SOURCE_SLOTS,
            seed=seed,
        )
        # Sources that completed a handshake with a listener of ours, oldest
        # first (bounded), as integers.
        self.proven: dict[int, None] = {}
        self._shapes: dict[tuple[int, bool, int | None, bool], _Shape] = {}
        # Per listener: its half-open queue as last seen, and its remote ends.
        self._half_opens: dict[
            int, tuple[TcpListener, int, tuple[int, int, int, int] | None, frozenset[int]]
        ] = {}
        # What SYN option octets offer (or the counter of why they are bad).
        self._offers: dict[bytes, _Offer | str] = {}
        # The next hop last looked up, when, and its MAC: the frames of one
        # batch (one instant) share a lookup.
        self._hop_at: tuple[IPv4Address | None, float, bytes | None] = (None, -1.0, None)

    def prove(self, src: int) -> None:
        """``src`` (an address as an int) completed a handshake with us."""
        proven = self.proven
        key = src
        proven.pop(key, None)
        if len(proven) >= PROVEN_SOURCES:
            del proven[next(iter(proven))]
        proven[key] = None

    def over_budget(self, src: int, now: float) -> bool:
        """A SYN from ``src`` to a flooded listener beyond its budgets (counted)."""
        if not self.per_source.allow(src, now):
            self.counters["tcp-syn-flood-source-dropped"] += 1
            return True
        if src in self.proven:
            return False
        if not self.shared.allow(now):
            self.counters["tcp-syn-flood-dropped"] += 1
            return True
        return False

    def answer(self, data: bytes, listener: TcpListener, now: float) -> bool:
        """``data`` (a pure SYN to ``listener``, whose half-open queue is full,
        in a frame without IPv4 options): True when handled here (answered
        with a cookie, or dropped and counted), False for the ordinary path.

        The cheap checks come first, then the budgets (a spoofer makes valid
        checksums as easily as bad ones, so checking them first would save
        no budget), then the checksums and options of what will be answered.
        """
        if len(data) < _OPTS_AT or data[:_MAC_END] != self._mac:
            return False
        total, _ident, _frag, _ttl, _proto, _csum, src, dst = _IP_FIELDS.unpack_from(
            data, _TOTAL_AT
        )
        ip = self._ip
        if (
            dst != ip.ip_int
            or total < _MIN_TOTAL
            or _IP + total > len(data)
            or not src
            or src == dst
            or src >> 24 == 127  # loopback
            or src >> 28 == 14  # multicast
            or src == 0xFFFFFFFF
            or src == self._bcast
        ):
            return False  # the ordinary path refuses and counts it
        on_link = src & self._mask == self._net
        if not on_link and ip.gateway is None:
            return False  # no route: counted there
        cookies = self._cookies
        local = listener.local[0]
        if cookies is None or (local != ANY and int(local) != dst):
            return False
        if src in self.proven:
            # A source with connections (or TIME-WAIT records) of ours: its
            # SYN may belong to one (RFC 9293 §3.10.7.4 challenge ACK, a
            # TIME-WAIT reopened): the ordinary path looks the 4-tuple up.
            return False
        if (src << 16 | int.from_bytes(data[_L4:_DPORT_AT])) in self._half_open(listener):
            # A retransmitted SYN of a half-open connection: its own SYN-ACK
            # again (the ordinary path), not a cookie.
            return False
        if len(listener.queue) >= listener.backlog:
            # As the ordinary path: dropped, the client retries later.
            self.counters["tcp-listen-overflow"] += 1
            return True
        if self.over_budget(src, now):
            return True
        if le_residue(data[_IP:_L4]):  # a valid header sums to ones'-complement -0
            return False  # counted there (before TCP: no budget spent again)
        counters = self.counters
        hlen = (data[_DOFF_AT] >> 4) << 2
        seg_len = total - wip.MIN_HEADER_LEN
        if hlen < _TCP_MIN or hlen > seg_len:
            counters["tcp-bad-data-offset"] += 1
            return True
        if ip.verify_l4 and not is_valid(
            le_residue(data[_L4 : _IP + total]) * 256 + src + dst + _PROTO_TCP + seg_len
        ):
            counters["tcp-bad-checksum"] += 1
            return True
        sport, dport, isn = _PORTS.unpack_from(data, _L4)
        if not sport:
            counters["tcp-bad-port"] += 1  # RFC 9293 §3.1: port 0 is reserved
            return True
        opts = data[_OPTS_AT : _L4 + hlen]
        offered = self._offers.get(opts)
        if offered is None:
            try:
                offered = _offered(opts)
            except MalformedPacket as exc:
                offered = f"{exc.layer}-{exc.reason}"
            if len(opts) != 20 or isinstance(offered, str):
                # Remembered: a flood's SYNs mostly carry the same options
                # (timestamps vary, but the Linux layout is read at fixed
                # places anyway). Bounded: an attacker varying them only
                # buys the parse, within the budgets.
                if len(self._offers) >= OFFERS_KEPT:
                    self._offers.clear()
                self._offers[opts] = offered
        if isinstance(offered, str):
            counters[offered] += 1
            return True
        mss, wscale, sack, tsval = offered
        config = listener.config
        index = _MSS_INDEX.get(mss)
        iss = cookies.raw_cookie(data[_SRC_AT:_ISN_END], int(now // COOKIE_PERIOD)) | (
            mss_index(mss) if index is None else index
        )
        ack = (isn + 1) & SEQ_MASK
        if tsval is not None and config.timestamps:
            shape = self._shape(config, True, wscale, sack)
            # The cookie's TSval (SynCookies.syn_ack's ts_value, inline):
            # ISS + ms with the option bits in its low six, never ahead.
            clock = (iss + int(now * 1000)) & SEQ_MASK
            ours = (clock & ~TS_OPT_MASK) | shape.bits
            if (ours - clock) & SEQ_MASK and not (ours - clock) & _SEQ_HALF:
                ours = (ours - TS_OPT_MASK - 1) & SEQ_MASK
            tcp_sum = shape.const + dport + sport + iss + ack + ours + tsval + src + dst
        else:
            shape = self._shape(config, False, None, False)
            ours = tsval = 0
            tcp_sum = shape.const + dport + sport + iss + ack + src + dst
        counters["tcp-syncookies-sent"] += 1
        counters["tcp-out"] += 1
        hop = IPv4Address(src) if on_link else ip.gateway
        assert hop is not None
        if hop is self._hop_at[0] and now == self._hop_at[1]:
            mac: bytes | None = self._hop_at[2]  # looked up at this instant already
        else:
            mac = self._hop_mac(hop, now)
            self._hop_at = (hop, now, mac)
        ip.ident = ident = (ip.ident + 1) & 0xFFFF
        frame = shape.pack(
            mac or _NO_MAC,
            ident,
            finish(shape.ip_const + ident + dst + src),
            dst,
            src,
            dport,
            sport,
            iss,
            ack,
            finish(tcp_sum),
            ours,
            tsval,
        )
        if mac is not None:
            ip.emit(frame, now)
        else:
            # Not resolved yet: queued for ARP like any packet (bounded, counted).
            ip.iface.send_ipv4(hop, [frame[_IP:]], now)
        return True

    def _half_open(self, listener: TcpListener) -> frozenset[int]:
        """The remote ends (address << 16 | port) of ``listener``'s half-open
        connections, rebuilt only when the queue changed: entries are
        appended, so its length and its newest key (held here, so never
        reused) tell."""
        queue = listener.half_open
        newest = next(reversed(queue), None)
        seen = self._half_opens.get(id(listener))
        if (
            seen is None
            or seen[0] is not listener
            or seen[1] != len(queue)
            or seen[2] is not newest
        ):
            remotes = frozenset(k[2] << 16 | k[3] for k in queue)  # (flows: ints)
            if len(self._half_opens) >= 64:
                self._half_opens.clear()
            seen = self._half_opens[id(listener)] = (listener, len(queue), newest, remotes)
        return seen[3]

    def _hop_mac(self, hop: IPv4Address, now: float) -> bytes | None:
        """The MAC of ``hop`` when it is known without asking ARP (the host's
        neighbour fast path); None otherwise."""
        ip = self._ip
        cache = ip.dest_cache  # keyed by the address as an int
        key = int(hop)
        cached = cache.get(key)
        if cached is None or cached[1] <= now:
            entry = ip.iface.arp.entries.get(hop)
            if entry is None or entry.mac is None:
                return None
            # Cached only if the entry may be used without asking ARP.
            ip.iface.remember(hop, hop, entry.mac, now)
            cached = cache.get(key)
            if cached is None or cached[1] <= now:
                return None
        return cached[0]

    def _shape(self, config: TcpConfig, ts: bool, wscale: int | None, sack: bool) -> _Shape:
        """The header shape answering a SYN that offers ``wscale``, ``sack``
        and (``ts``) timestamps to a listener with ``config``."""
        key = (id(config), ts, wscale, sack)
        shape = self._shapes.get(key)
        if shape is None or shape.config is not config:
            if len(self._shapes) >= 64:
                self._shapes.clear()
            shape = self._shapes[key] = _Shape(config, ts, wscale, sack, self._eth_tail, self._ttl)
        return shape

"""SYN cookies: answering a SYN flood without keeping state (RFC 4987 §3.6).

When a listener's half-open queue is full, a SYN is answered statelessly: our
ISN is a keyed hash of the 4-tuple, the client's ISN and a 64-second counter,
with the client's MSS (rounded down to one of eight values) in its low three
bits. The handshake's ACK proves the client saw that ISN, and the connection
is rebuilt from it.

The options the client offered survive as Linux keeps them: when its SYN
carries timestamps (RFC 7323) our SYN-ACK's TSval is our clock with the
options in its low six bits (the client's window shift in bits 0-3, 15 for
none; SACK-permitted in bit 4; bit 5 set), moved back by 64 if that put it
ahead, and the client echoes it in the TSecr of its ACK. Never ahead keeps our
TSvals monotonic for the client's PAWS (RFC 7323 §5.3); the first RTT sample
is up to 127 ms long. Without timestamps in the SYN only the MSS survives (no
window scaling, no SACK), the cost of keeping no state. As in Linux, the
option bits are not covered by the cookie's hash: a forger who can complete a
handshake at all can only pick options the listener supports.

Layer: stack. Imports synack.wire, synack.tcp and synack.stack.config.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_right

from synack.stack.config import ConnKey
from synack.tcp.config import TcpConfig
from synack.tcp.seq import SEQ_MASK, seq_add, seq_gt
from synack.wire.tcp import MAX_WSCALE, TcpFlags, TcpOptions, TcpSegment

# The MSS values a cookie can carry (its low three bits index them).
COOKIE_MSS = (536, 1220, 1440, 1460, 4312, 8960, 16344, 65495)
COOKIE_PERIOD = 64.0  # seconds per counter step; a cookie is good for one or two
# The low bits of a cookie SYN-ACK's TSval (echoed in the ACK's TSecr).
TS_OPT_BITS = 6
TS_OPT_MASK = (1 << TS_OPT_BITS) - 1
TS_WSCALE_NONE = 0xF
TS_SACK = 1 << 4
TS_USED = 1 << 5


def mss_index(mss: int | None) -> int:
    """The index in :data:`COOKIE_MSS` of the largest value not above the
    client's MSS (536, RFC 9293 §3.7.1's default, when it gave none or less)."""
    return bisect_right(COOKIE_MSS, max(mss or 536, 536)) - 1


def ts_bits(config: TcpConfig, wscale: int | None, sack_permitted: bool) -> tuple[int, bool, bool]:
    """The option bits a cookie SYN-ACK's TSval carries for a SYN offering
    ``wscale`` and ``sack_permitted`` (with timestamps), and whether window
    scaling and SACK are agreed."""
    wscale_ok = config.window_scale and wscale is not None
    bits = TS_USED | (min(wscale or 0, MAX_WSCALE) if wscale_ok else TS_WSCALE_NONE)
    sack_ok = config.sack and sack_permitted
    if sack_ok:
        bits |= TS_SACK
    return bits, wscale_ok, sack_ok


def ts_value(iss: int, now: float, bits: int) -> int:
    """A cookie SYN-ACK's TSval: the clock of the connection rebuilt from the
    cookie (TSval = ISS + ms, RFC 7323 §5.4 offset) with ``bits`` in its low
    six bits, rounded down, never up (PAWS)."""
    clock = seq_add(iss, int(now * 1000))
    tsval = (clock & ~TS_OPT_MASK) | bits
    if seq_gt(tsval, clock):
        tsval = seq_add(tsval, -(TS_OPT_MASK + 1))
    return tsval


class SynCookies:
    """Makes and checks the cookies of one host (keyed by its secret)."""

    __slots__ = ("_at", "_keyed")

    def __init__(self, isn_secret: bytes) -> None:
        secret = hashlib.blake2s(b"syn-cookie" + isn_secret).digest()
        # Keyed once; each cookie hashes a copy (keying costs a block), and
        # the copy that has taken the current counter is kept.
        self._keyed = hashlib.blake2s(key=secret, digest_size=4)
        self._at: tuple[int, hashlib.blake2s] = (-1, self._keyed)

    def raw_cookie(self, addresses_ports_isn: bytes, counter: int) -> int:
        """The cookie (low three bits clear) of 16 octets as a SYN's IPv4 and
        TCP headers hold them from the source address on: remote address,
        local address, remote port, local port, the client's ISN; and the
        time ``counter``."""
        at, h = self._at
        if at != counter:
            h = self._keyed.copy()
            h.update((counter % (1 << 64)).to_bytes(8, "big"))
            self._at = (counter, h)
        h = h.copy()
        h.update(addresses_ports_isn)
        return int.from_bytes(h.digest(), "big") & ~7 & SEQ_MASK

    def _cookie(self, key: ConnKey, client_isn: int, counter: int) -> int:
        material = b"".join(
            (
                key[2].packed,
                key[0].packed,
                key[3].to_bytes(2, "big"),
                key[1].to_bytes(2, "big"),
                client_isn.to_bytes(4, "big"),
            )
        )
        return self.raw_cookie(material, counter)

    def syn_ack(self, key: ConnKey, syn: TcpSegment, config: TcpConfig, now: float) -> TcpSegment:
        """The SYN-ACK answering ``syn`` (to ``key``'s local end), its ISN the cookie.

        Its options are what a connection would have agreed (the ones both
        ``config`` and ``syn`` want), when the SYN carries timestamps to keep
        them in.
        """
        offered = syn.options
        iss = self._cookie(key, syn.seq, int(now // COOKIE_PERIOD)) | mss_index(offered.mss)
        if config.timestamps and offered.timestamps is not None:
            bits, wscale_ok, sack_ok = ts_bits(config, offered.wscale, offered.sack_permitted)
            tsval = ts_value(iss, now, bits)
            options = TcpOptions(
                mss=config.mss,
                wscale=config.rcv_wscale if wscale_ok else None,
                sack_permitted=sack_ok,
                timestamps=(tsval, offered.timestamps[0]),
            )
        else:
            options = TcpOptions(mss=config.mss)
        return TcpSegment(
            syn.dst_port,
            syn.src_port,
            iss,
            seq_add(syn.seq, 1),
            TcpFlags.SYN | TcpFlags.ACK,
            min(65535, config.receive_buffer),
            options=options,
        )

    def check_ack(self, key: ConnKey, ack: TcpSegment, now: float) -> tuple[int, TcpSegment] | None:
        """If ``ack`` completes a cookie handshake: our ISN and the client's SYN
        as rebuilt from it (its ISN, window, the MSS the cookie kept and the
        options its echoed TSecr kept). None for an ACK that carries no valid
        cookie."""
        iss = seq_add(ack.ack, -1)
        client_isn = seq_add(ack.seq, -1)
        counter = int(now // COOKIE_PERIOD)
        if (iss & ~7) not in (
            self._cookie(key, client_isn, counter),
            self._cookie(key, client_isn, counter - 1),
        ):
            return None
        mss = COOKIE_MSS[iss & 7]
        ts = ack.options.timestamps
        if ts is not None and ts[1] & TS_USED:
            # The options our SYN-ACK agreed, back from the echoed TSval.
            bits = ts[1] & TS_OPT_MASK
            wscale = bits & TS_WSCALE_NONE
            options = TcpOptions(
                mss=mss,
                wscale=None if wscale == TS_WSCALE_NONE else wscale,
                sack_permitted=bool(bits & TS_SACK),
                timestamps=(ts[0], 0),
            )
        else:
            options = TcpOptions(mss=mss)
        syn = TcpSegment(
            ack.src_port, ack.dst_port, client_isn, 0, TcpFlags.SYN, ack.window, options=options
        )
        return iss, syn

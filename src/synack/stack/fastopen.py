"""A host's TCP Fast Open (RFC 7413): its cookies, its cookie cache, the opens in progress.

The sans-IO rules are :mod:`synack.tcp.fastopen`'s; this is the host's share,
called by :mod:`synack.stack.tcp_demux` at a listener's SYN, at an active open
and when an open is over:

- Server: Fast Open is off unless the host allows it (``HostConfig.tcp_fastopen``
  has bit 2, as Linux's ``net.ipv4.tcp_fastopen`` sysctl) and the listener
  asked for it with a queue length (``TcpListener.fastopen_qlen``, Linux's
  ``setsockopt(TCP_FASTOPEN, qlen)``). A SYN's cookie is checked against its
  source address; at most ``fastopen_qlen`` accepted opens may be pending (in
  SYN-RECEIVED) per listener, beyond that SYNs get an ordinary handshake (RFC
  7413 §5.1: the data of a SYN costs the server before the client has proved
  its address, so an attacker who got one valid cookie cannot make it hold an
  unbounded number). A child that took data is queued for accept at once.
- Client: bit 1 of ``tcp_fastopen`` (on by default, as in Linux) lets an
  application open with Fast Open; the cache (per server address) gives the
  cookie and learns what each open found out.

Counters (the host's ``counters``): ``tcp-fastopen-request``,
``-accepted``, ``-bad-cookie``, ``-overflow`` (server); ``tcp-fastopen-active``,
``-active-acked``, ``-active-refused``, ``-active-failed`` (client).

Layer: stack. Imports synack.wire, synack.tcp and synack.stack.endpoints.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from ipaddress import IPv4Address

from synack.stack.endpoints import TcpListener, TcpStream
from synack.tcp.fastopen import FastOpen, FastOpenCache, FastOpenCookies
from synack.tcp.states import Cause, State
from synack.wire.tcp import TcpSegment

#: ``HostConfig.tcp_fastopen`` bits, as Linux's sysctl: 1 client, 2 server.
CLIENT = 1
SERVER = 2


class HostFastOpen:
    """The host's Fast Open state (see the module docstring)."""

    __slots__ = ("cache", "cookies", "counters", "mode", "opens")

    def __init__(self, mode: int, isn_secret: bytes, counters: Counter[str]) -> None:
        self.mode = mode
        # A secret of its own, derived from the host's (so a run is reproducible).
        self.cookies = FastOpenCookies(hashlib.blake2s(b"tcp-fastopen" + isn_secret).digest())
        self.cache = FastOpenCache()
        self.counters = counters
        # Opens in progress: the stream, its FastOpen and (server) its listener.
        self.opens: dict[TcpStream, tuple[FastOpen, TcpListener | None]] = {}

    def at_syn(
        self, listener: TcpListener, src: IPv4Address, seg: TcpSegment, now: float
    ) -> FastOpen | None:
        """The verdict on a SYN to ``listener`` from ``src`` (RFC 7413 §4.2.2)."""
        if not (self.mode & SERVER and listener.fastopen_qlen > 0):
            return None  # off: the option is ignored, as any unknown one
        if seg.options.fastopen is None:
            return None
        room = listener.fastopen_pending < listener.fastopen_qlen
        fo, outcome = self.cookies.answer(src, seg, now, room=room)
        if outcome is not None:
            self.counters[f"tcp-fastopen-{outcome}"] += 1
        return fo

    def accepted(self, stream: TcpStream, fo: FastOpen, listener: TcpListener) -> None:
        """A child took its SYN's data: pending until ESTABLISHED or closed."""
        listener.fastopen_pending += 1
        self.opens[stream] = (fo, listener)

    def offer(self, stream: TcpStream, now: float) -> FastOpen | None:
        """What an active open tries (None: an ordinary open)."""
        if not self.mode & CLIENT:
            return None
        fo = self.cache.offer(stream.key[2], now)
        if fo is not None:
            self.counters["tcp-fastopen-active"] += 1
            self.opens[stream] = (fo, None)
        return fo

    def over(self, stream: TcpStream, now: float) -> None:
        """``stream``'s handshake is over (ESTABLISHED) or it closed: settle it."""
        entry = self.opens.pop(stream, None)
        if entry is None:
            return
        fo, listener = entry
        if listener is not None:
            listener.fastopen_pending -= 1
            return
        conn = stream.conn
        if conn.state is State.CLOSED and not fo.synack_seen:
            if conn.transitions[-1].cause is not Cause.TIMEOUT:
                return  # refused or aborted: says nothing about Fast Open
            fo.failed = True  # §4.1.3.1: no answer at all (a middlebox may drop SYN data)
            self.counters["tcp-fastopen-active-failed"] += 1
        elif fo.syn_data:
            acked = "acked" if fo.data_acked else "refused"
            self.counters[f"tcp-fastopen-active-{acked}"] += 1
        self.cache.learn(stream.key[2], fo, now)

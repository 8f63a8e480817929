"""A host's configuration, its addresses' vocabulary and its local errors.

:class:`HostConfig` is what a :class:`~synack.stack.host.Host` is built from;
the constants and aliases here (``ANY``, ``Address``, ``ConnKey``, the
ephemeral port range) and the errors an application gets from the host's API
are shared by every protocol module of the host, so they live below them all.

Layer: stack. Imports synack.errors, synack.wire, synack.tcp and synack.stack.arp.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface

from synack.errors import LocalProtocolError
from synack.stack.arp import ArpPolicy, ArpTimings
from synack.tcp.config import TcpConfig
from synack.wire import ipv4 as wip
from synack.wire import tcp as wtcp

Address = tuple[IPv4Address, int]
ConnKey = tuple[IPv4Address, int, IPv4Address, int]  # local ip, port, remote ip, port

EPHEMERAL_LOW = 49152  # RFC 6335 §6 dynamic ports
EPHEMERAL_HIGH = 65535
LIMITED_BROADCAST = IPv4Address("255.255.255.255")
ANY = IPv4Address("0.0.0.0")
LOOPBACK = IPv4Address("127.0.0.1")


def as_address(value: object) -> IPv4Address:
    """``IPv4Address(value)``, without formatting and re-parsing a value that
    already is one (the constructor turns it into a string first: several
    microseconds per connect or datagram)."""
    if type(value) is IPv4Address:
        return value
    return IPv4Address(value)


class NoRouteError(LocalProtocolError):
    """No route to the destination (off-link and no gateway): ENETUNREACH."""

    errno = errno.ENETUNREACH


class AddressInUseError(LocalProtocolError):
    """The port (or the 4-tuple) is taken: EADDRINUSE."""

    errno = errno.EADDRINUSE


class AddressNotAvailableError(LocalProtocolError):
    """A local address that is not this host's: EADDRNOTAVAIL."""

    errno = errno.EADDRNOTAVAIL


#: TCP's send and receive buffers for a host on a real link (a TAP device:
#: ``synack run``, ``synack stack``). The window must cover what is in flight
#: while synack's Python turns a batch around: on a TAP at several hundred MB/s
#: that is more than TcpConfig's 256 KiB, and a kernel sender was left waiting
#: for window most of the time (upload with offloads 270 -> 700+ MB/s at
#: 1 MiB, bench/stack_apps.py). Linux autotunes its receive buffer up to 6 MiB
#: (tcp_rmem); these are bounds, not allocations: buffers hold what is unread.
#: The send buffer also bounds what is in flight: at 1 MiB an offloaded 100 MB
#: download (aiohttp's sendfile) ran 450-750 MB/s, at 3 MiB 810-890 and with
#: less CPU per MB (the sender waited less for ACKs to free room; Linux's
#: tcp_wmem lets a socket grow to 4 MiB).
LINK_TCP_BUFFER = 3 << 20
#: The receive buffer (so the most window offered) for a host on a real link.
#: A reader behind the stack holds some of it: aiohttp pauses reading at 128
#: KiB of its own and leaves the rest in TCP's buffer until its handler
#: reads, and a batch of coalesced 64 KiB segments is taken in one turn, so
#: at 1 MiB the window offered was 324-833 KiB and a kernel sender was
#: receive-window limited a quarter of the time (``ss -ti``: rwnd_limited
#: 22-37%); at 4 MiB, 6% (an offloaded 100 MB upload, bench/stack_apps.py).
#: Linux offers up to 6 MiB (tcp_rmem). A bound, not an allocation.
LINK_TCP_RECEIVE_BUFFER = 4 << 20


def mss_for(mtu: int) -> int:
    """The MSS an MTU allows: less the host's IPv4 and TCP headers, which carry
    no options (RFC 9293 §3.7.1, MUST-15's "MTU minus the fixed headers")."""
    return mtu - wip.MIN_HEADER_LEN - wtcp.MIN_HEADER_LEN


def link_tcp_config(mtu: int) -> TcpConfig:
    """TcpConfig for a host on a real link: :func:`mss_for` its MTU,
    :data:`LINK_TCP_BUFFER` to send and :data:`LINK_TCP_RECEIVE_BUFFER` to receive."""
    return TcpConfig(
        mss=mss_for(mtu), send_buffer=LINK_TCP_BUFFER, receive_buffer=LINK_TCP_RECEIVE_BUFFER
    )


@dataclass(frozen=True, slots=True)
class HostConfig:
    """Everything a host is built from: its link identity and its limits."""

    mac: bytes
    interface: IPv4Interface  # address and prefix, e.g. IPv4Interface("10.213.0.2/24")
    gateway: IPv4Address | None = None
    mtu: int = 1500  # largest IP packet the link carries
    name: str = ""
    arp_policy: ArpPolicy = field(default_factory=ArpPolicy)
    arp_timings: ArpTimings = field(default_factory=ArpTimings)
    reassembly_timeout: float = 30.0
    reassembly_max_datagrams: int = 64
    reassembly_max_bytes: int = 1 << 20  # charged by octets held (Linux ipfrag_high_thresh)
    reassembly_per_source: int = 16  # partial datagrams one source may have
    udp_queue_limit: int = 256  # datagrams per endpoint before drops
    icmp_errors_per_second: float = 1000.0  # Linux icmp_msgs_per_sec
    icmp_error_burst: int = 50  # Linux icmp_msgs_burst
    ttl: int = 64
    tcp: TcpConfig | None = None  # default: TcpConfig with mss = mtu - 40
    # SYN-flood defence once a listener's half-open queue is full: SYN
    # cookies (True), or evicting the oldest half-open connection (False).
    syn_cookies: bool = True
    # Once a listener's half-open queue is full (a flood), each SYN is
    # answered with a SYN cookie built from its raw bytes, or dropped, before
    # it is parsed (synack.stack.synflood: ~5 us answered, ~2 dropped, where
    # parsing and answering it cost ~40: bench/stack_flood.py). Budgets: one
    # source (a hashed bucket of its address) ``syn_flood_per_source`` a
    # second; all unproven sources together ``syn_flood_per_second``, which
    # answers the whole 48k/s flood issue 14 measured (so a never-seen
    # client's first SYN is answered) and caps the CPU a faster one takes.
    # A source that completed a handshake recently skips the shared budget
    # (spoofed sources never complete one).
    syn_flood_per_second: float = 50_000.0
    syn_flood_burst: int = 5_000
    # One source may open 1,000 connections at once (a load generator, a
    # browser farm behind one NAT) and get a cookie for each, as from Linux,
    # which has no per-source limit; one source flooding still takes at most
    # 2% of the shared budget.
    syn_flood_per_source: float = 1_000.0
    syn_flood_source_burst: int = 1_000
    # Echo requests answered (FreeBSD's icmplim covers echo replies; Linux
    # leaves them unlimited): an echo flood cannot take the CPU or the link.
    icmp_echo_per_second: float = 2000.0
    icmp_echo_burst: int = 200
    icmp_echo_per_source: float = 500.0
    icmp_echo_source_burst: int = 100
    # TCP Fast Open (RFC 7413), as Linux's net.ipv4.tcp_fastopen: bit 1 lets
    # applications open with it (client), bit 2 lets listeners that ask for it
    # (a Fast Open queue length) accept it (server). Linux's default, 1: the
    # server side is off unless chosen (synack.stack.fastopen).
    tcp_fastopen: int = 1

    def __post_init__(self) -> None:
        if len(self.mac) != 6:
            raise ValueError("mac must be 6 bytes")
        if self.mac[0] & 1:
            raise ValueError("mac must be unicast")
        if self.tcp_fastopen not in (0, 1, 2, 3):
            raise ValueError("tcp_fastopen must be 0-3 (1: client, 2: server, 3: both)")
        if not 68 <= self.mtu <= 65535:
            # RFC 791: every host must handle 68-octet packets.
            raise ValueError("mtu must be between 68 and 65535")
        if self.gateway is not None and self.gateway not in self.interface.network:
            raise ValueError(f"gateway {self.gateway} is not on {self.interface.network}")

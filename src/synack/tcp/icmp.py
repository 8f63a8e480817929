"""ICMP errors as TCP sees them (RFC 9293 §3.9.2.2, RFC 5927): which are soft, which hard.

The host's ICMP code finds the connection from the quoted IP and TCP
headers (MUST-54) and calls :meth:`TcpConnection.icmp_error
<synack.tcp.connection.TcpConnection.icmp_error>` with one of these kinds and
the quoted sequence number; :func:`classify` turns an IPv4 ICMP type and code
into a kind. What a kind does:

* Source Quench: silently discarded (MUST-55).
* Soft errors (Destination Unreachable codes 0, 1, 5 and the administrative
  ones, Time Exceeded, Parameter Problem): never abort (MUST-56); the last one
  is kept for the application (SHLD-25: ``soft_error``, and the
  :class:`~synack.tcp.events.TimedOut` that ends a connection carries it).
* Hard errors (protocol and port unreachable) abort a connection being
  opened (SHLD-26): CLOSED, with ConnectionRefused for an active open (a
  passive child in SYN-RECEIVED is only forgotten). In the synchronized states they are
  treated as soft, as RFC 5927 §4.1 recommends against blind
  connection-reset attacks (RFC 9293 notes implementations do this).
* Fragmentation needed (code 4, listed as hard by RFC 9293) is path MTU
  discovery's (RFC 1191): the IP layer lowers the path MTU; aborting would
  defeat it, so TCP treats it as soft.

An error is acted on only if the quoted sequence number lies in
[SND.UNA, SND.MAX) (RFC 5927 §4.1, a check against forged ICMP).

Layer: tcp. Imports nothing (the standard library only).
"""

from __future__ import annotations

import enum

__all__ = ["HARD_ERRORS", "IcmpError", "classify"]


class IcmpError(enum.Enum):
    """The ICMP errors TCP distinguishes."""

    NET_UNREACHABLE = "net-unreachable"
    HOST_UNREACHABLE = "host-unreachable"
    PROTOCOL_UNREACHABLE = "protocol-unreachable"
    PORT_UNREACHABLE = "port-unreachable"
    FRAG_NEEDED = "fragmentation-needed"
    SOURCE_ROUTE_FAILED = "source-route-failed"
    ADMIN_UNREACHABLE = "unreachable"  # Destination Unreachable codes 6-15
    TIME_EXCEEDED = "time-exceeded"
    PARAMETER_PROBLEM = "parameter-problem"
    SOURCE_QUENCH = "source-quench"


#: The kinds that abort a connection being opened (SHLD-26, less code 4).
HARD_ERRORS = frozenset({IcmpError.PROTOCOL_UNREACHABLE, IcmpError.PORT_UNREACHABLE})

_UNREACHABLE = {
    0: IcmpError.NET_UNREACHABLE,
    1: IcmpError.HOST_UNREACHABLE,
    2: IcmpError.PROTOCOL_UNREACHABLE,
    3: IcmpError.PORT_UNREACHABLE,
    4: IcmpError.FRAG_NEEDED,
    5: IcmpError.SOURCE_ROUTE_FAILED,
}


def classify(icmp_type: int, code: int) -> IcmpError | None:
    """The kind of an IPv4 ICMP error (type 3, 4, 11 or 12), or None for anything else."""
    if icmp_type == 3:
        return _UNREACHABLE.get(code, IcmpError.ADMIN_UNREACHABLE)
    if icmp_type == 4:
        return IcmpError.SOURCE_QUENCH
    if icmp_type == 11:
        return IcmpError.TIME_EXCEEDED
    if icmp_type == 12:
        return IcmpError.PARAMETER_PROBLEM
    return None

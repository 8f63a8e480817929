"""The one mapping from synack's refusals and TCP events to the stdlib's OSError.

Every adapter (asyncio transports, the socket-shaped API) raises what the
kernel's sockets would: ``ConnectionRefusedError`` for a RST answering a SYN,
``ConnectionResetError``, ``TimeoutError`` with ETIMEDOUT, an ``OSError`` with
the errno a host-level refusal or an ICMP error carries. The adapters call
:func:`for_event` (TCP events), :func:`from_errno` (an errno, e.g. a UDP
endpoint's ICMP error) and :func:`oserror` (a host-level refusal); none of
them builds an OSError for these cases itself.

Layer: adapters. Imports synack.errors, synack.tcp.events, synack.stack.events.
"""

from __future__ import annotations

import errno
import os

from synack.errors import LocalProtocolError
from synack.stack.events import HostUnreachable
from synack.tcp import events as tev
from synack.tcp.icmp import IcmpError

__all__ = ["for_event", "from_errno", "oserror"]


def from_errno(code: int, what: str = "") -> OSError:
    """The OSError subclass Python raises for ``code``, as a kernel socket would."""
    msg = os.strerror(code) + (f": {what}" if what else "")
    # OSError's constructor picks the subclass from the errno (PEP 3151):
    # ECONNREFUSED -> ConnectionRefusedError, EPIPE -> BrokenPipeError, ...
    return OSError(code, msg)


def for_event(event: object) -> OSError | None:
    """The error a kernel socket reports for a connection's ``event``, or None
        when the event is not a failure (Connected, EndOfStream, Closed ...).

        RST answering our SYN: ECONNREFUSED (RFC 9293 §3.10.7.3); RST on a
        synchronized connection: ECONNRESET (§3.10.7.4); ARP gave up on the next
        hop: EHOSTUNREACH; an ICMP hard error ended the handshake: its errno;
    retransmissions reached R2 (§3.8.3, MUST-20; for a SYN
        MUST-23) or keep-alives went unanswered (§3.8.4): ETIMEDOUT."""
    if isinstance(event, tev.ConnectionRefused):
        # An ICMP protocol unreachable ends a connect as on Linux: ENOPROTOOPT.
        if event.icmp == IcmpError.PROTOCOL_UNREACHABLE.value:
            return from_errno(errno.ENOPROTOOPT)
        return from_errno(errno.ECONNREFUSED)
    if isinstance(event, tev.ConnectionReset):
        return from_errno(errno.ECONNRESET)
    if isinstance(event, HostUnreachable):
        return from_errno(errno.EHOSTUNREACH, str(event.ip))
    if isinstance(event, tev.TimedOut):
        return from_errno(errno.ETIMEDOUT, f"TCP {event.reason} timeout")
    return None


def oserror(exc: LocalProtocolError) -> OSError:
    """The stdlib exception for a host-level refusal (errno when it has one)."""
    code = getattr(exc, "errno", None) or errno.EINVAL
    return OSError(code, f"{os.strerror(code)}: {exc}")

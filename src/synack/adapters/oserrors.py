"""The one mapping from synack's refusals and TCP events to the stdlib's OSError.

Every adapter (asyncio transports, the socket-shaped API) raises what the
kernel's sockets would: ``ConnectionRefusedError`` for a RST answering a SYN,
``ConnectionResetError``, ``TimeoutError`` with ETIMEDOUT, an ``OSError`` with
the errno a host-level refusal carries.

Layer: adapters. Imports synack.errors.
"""

from __future__ import annotations

import errno
import os

from synack.errors import LocalProtocolError

__all__ = ["from_errno", "oserror"]


def from_errno(code: int, what: str = "") -> OSError:
    """The OSError subclass Python raises for ``code``, as a kernel socket would."""
    msg = os.strerror(code) + (f": {what}" if what else "")
    if code == errno.ECONNREFUSED:
        return ConnectionRefusedError(code, msg)
    if code == errno.ECONNRESET:
        return ConnectionResetError(code, msg)
    if code == errno.ETIMEDOUT:
        return TimeoutError(code, msg)
    return OSError(code, msg)


def oserror(exc: LocalProtocolError) -> OSError:
    """The stdlib exception for a host-level refusal (errno when it has one)."""
    code = getattr(exc, "errno", None) or errno.EINVAL
    return OSError(code, f"{os.strerror(code)}: {exc}")

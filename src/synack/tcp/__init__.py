"""The sans-IO RFC 9293 TCP connection (see connection.py for the API).

Layer: tcp. Imports only synack.tcp's own modules.
"""

from __future__ import annotations

from synack.tcp.config import TcpConfig
from synack.tcp.connection import TcpConnection, TcpStats, reply_when_closed, reply_when_listening
from synack.tcp.isn import IsnGenerator
from synack.tcp.states import TRANSITIONS, Cause, State, Transition

__all__ = [
    "TRANSITIONS",
    "Cause",
    "IsnGenerator",
    "State",
    "TcpConfig",
    "TcpConnection",
    "TcpStats",
    "Transition",
    "reply_when_closed",
    "reply_when_listening",
]

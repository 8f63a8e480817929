"""Framed TCP chat (docs/protocol.md §2): the rules (``core``), the asyncio server and
client API, the demo script.

Layer: apps. Imports chat.client and chat.server.
"""

from __future__ import annotations

from synack.apps.chat.client import ChatClient, ChatError
from synack.apps.chat.server import DEFAULT_PORT, ChatConfig, ChatServer

__all__ = ["DEFAULT_PORT", "ChatClient", "ChatConfig", "ChatError", "ChatServer"]

"""Framed TCP chat (PROTOCOLS.md §2): server, client API, command line, demo script."""

from __future__ import annotations

from synack.apps.chat.client import ChatClient, ChatError
from synack.apps.chat.server import DEFAULT_PORT, ChatConfig, ChatServer

__all__ = ["DEFAULT_PORT", "ChatClient", "ChatConfig", "ChatError", "ChatServer"]

"""The two sides of every protocol error (house style item 6).

``LocalProtocolError``: the caller misused an API (our bug, or the user's).
``RemoteProtocolError``: the peer broke the protocol. A sans-IO core never lets
a peer make it raise anything else; adapters count and drop what a peer sends
wrong. ``UsageError`` is a command-line mistake: one clear line, exit status 2.

Layer: errors (the bottom). Imports only the standard library.
"""

from __future__ import annotations


class SynackError(Exception):
    """Base of every error synack raises on purpose."""


class LocalProtocolError(SynackError):
    """The caller used an API in a way the protocol does not allow."""


class RemoteProtocolError(SynackError):
    """The peer sent something the protocol does not allow."""


class UsageError(SynackError):
    """A user mistake on the command line (bad address, port in use, missing file)."""

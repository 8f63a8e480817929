"""The UDP time service: the strftime format protocol (docs/protocol.md §3a) and an
SNTPv4 server (§3b), as sans-IO cores with thin asyncio adapters.

Layer: apps. Imports only the standard library.
"""

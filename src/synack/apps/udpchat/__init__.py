"""The peer-to-peer UDP messenger (docs/protocol.md §4): a sans-IO core with acks,
retransmission and duplicate suppression, and a thin asyncio adapter.

Layer: apps. Imports only the standard library.
"""

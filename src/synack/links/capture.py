"""Capture every frame of a link to a pcap file (``--pcap``).

:class:`Capture` is an observer: add it to a host's ``observers`` (it records
the host's :class:`~synack.stack.events.FrameTrace` records, in and out) or to
a :class:`~synack.links.lan.Lan`'s ``taps`` (every frame put on any wire).
Host and simulator clocks are monotonic or virtual, so ``time_offset`` turns
them into Unix time for the file (the asyncio driver passes
``time.time() - loop.time()``).

Layer: links. Imports synack.stack (FrameTrace) and synack.wire.
"""

from __future__ import annotations

from synack.stack.events import FrameTrace
from synack.wire.pcap import LINKTYPE_ETHERNET, PathOrFile, PcapWriter


class Capture:
    def __init__(
        self,
        file: PathOrFile,
        *,
        time_offset: float = 0.0,
        directions: tuple[str, ...] = ("in", "out"),
    ) -> None:
        self.writer = PcapWriter(file, LINKTYPE_ETHERNET, nanosecond=True, flush_each=False)
        self.time_offset = time_offset
        self.directions = directions
        self.frames = 0

    def __call__(self, record: object) -> None:
        """Host observer entry point: FrameTrace records are written, others ignored."""
        if isinstance(record, FrameTrace) and record.direction in self.directions:
            self.write(record.ts, record.frame)

    def tap(self, _link: str, now: float, frame: bytes) -> None:
        """:class:`~synack.links.lan.Lan` tap entry point."""
        self.write(now, frame)

    def write(self, ts: float, frame: bytes) -> None:
        self.writer.write(max(0.0, ts + self.time_offset), frame)
        self.frames += 1

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()

    def __enter__(self) -> Capture:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

from __future__ import annotations

import io

import pytest
from rich.console import Console

from synack.trace.builder import TraceBuilder
from synack.trace.terminal import SequenceDiagram, render, to_text
from tests.trace.frames import AK, CONVERSATION, ISN_A, ISN_B, PA, A, B, tcp_frame


def diagram(lost: frozenset[int] = frozenset(), frames=CONVERSATION) -> str:  # type: ignore[no-untyped-def]
    b = TraceBuilder(names={str(A): "A", str(B): "B"})
    for i, (t, f) in enumerate(frames):
        b.add_frame(t, f, lost=i in lost, lost_where="A-B" if i in lost else None)
    return to_text(b.build(), width=100)


def test_two_columns_with_arrows_in_both_directions_and_textbook_labels() -> None:
    text = diagram()
    lines = text.splitlines()
    assert "A 172.16.10.1" in lines[0] and "B 172.16.10.2" in lines[0]
    assert lines[0].index("A 172") < lines[0].index("B 172")
    right = [ln for ln in lines if "▶" in ln]
    left = [ln for ln in lines if "◀" in ln]
    # 12 frames: ARP request, 6 TCP from A; ARP reply, 4 TCP from B.
    assert (len(right), len(left)) == (7, 5)
    assert "SYN seq=0 win=64240" in text
    assert "SYN,ACK seq=0 ack=1 win=64240" in text
    assert "PSH,ACK seq=1 ack=6 win=64240 len=6" in text
    assert "who-has 172.16.10.2 tell 172.16.10.1" in text


def test_states_are_written_beside_their_own_column() -> None:
    lines = diagram().splitlines()
    x_a = lines[1].index("│")
    x_b = lines[1].rindex("│")
    # Initial states: A CLOSED left of its column, B LISTEN right of its column.
    assert lines[1].index("CLOSED") < x_a < x_b < lines[1].index("LISTEN")

    def col(state: str) -> list[str]:
        return [
            "A" if ln.index(state) < x_a else "B"
            for ln in lines[2:]
            if f" {state}" in ln and "│" in ln and "seq=" not in ln
        ]

    assert col("SYN-SENT") == ["A"]
    assert col("SYN-RECEIVED") == ["B"]
    assert col("ESTABLISHED") == ["A", "B"]
    assert col("TIME-WAIT") == ["A"]
    assert col("LAST-ACK") == ["B"]
    # The order the textbook draws: A enters FIN-WAIT-1 before B enters CLOSE-WAIT.
    text = "\n".join(lines)
    assert text.index("FIN-WAIT-1") < text.index("CLOSE-WAIT") < text.index("TIME-WAIT")


def test_a_lost_segment_stops_half_way_at_a_cross_and_its_resend_is_marked() -> None:
    frames = [*CONVERSATION[2:5]]
    frames.append((0.1, tcp_frame(A, B, 40000, 8898, PA, ISN_A + 1, ISN_B + 1, b"hello")))
    frames.append((0.3, tcp_frame(A, B, 40000, 8898, PA, ISN_A + 1, ISN_B + 1, b"hello")))
    frames.append((0.31, tcp_frame(B, A, 8898, 40000, AK, ISN_B + 1, ISN_A + 6)))
    lines = diagram(frozenset({3}), frames).splitlines()
    crosses = [i for i, ln in enumerate(lines) if "✗" in ln]
    assert len(crosses) == 1
    cross_line = lines[crosses[0]]
    x_a, x_b = cross_line.index("│"), cross_line.rindex("│")
    assert x_a < cross_line.index("✗") < x_b
    assert "▶" not in cross_line and "◀" not in cross_line
    assert "LOST on A-B" in lines[crosses[0] - 1]
    assert "(retransmission)" in lines[crosses[0] + 1]


def test_render_prints_connection_summary() -> None:
    b = TraceBuilder()
    for t, f in CONVERSATION:
        b.add_frame(t, f)
    out = io.StringIO()
    render(b.build(), Console(file=out, width=120, color_system=None))
    text = out.getvalue()
    assert "connection 0: 172.16.10.1:40000 ↔ 172.16.10.2:8898" in text
    assert "TIME-WAIT / CLOSED (inferred from the segments)" in text


def test_narrow_terminal_truncates_labels_but_keeps_arrows() -> None:
    b = TraceBuilder()
    for t, f in CONVERSATION:
        b.add_frame(t, f)
    lines = [ln.plain for ln in SequenceDiagram(b.build(), width=60).lines()]
    assert all(len(ln) <= 60 for ln in lines)
    assert sum("▶" in ln or "◀" in ln for ln in lines) == 12


def test_a_terminal_gets_colour_and_at_most_terminal_frames(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import synack.trace.terminal as terminal

    monkeypatch.setattr(terminal, "TERMINAL_FRAMES", 5)
    b = TraceBuilder()
    for t, f in CONVERSATION:
        b.add_frame(t, f)
    out = io.StringIO()
    console = Console(file=out, width=120, force_terminal=True, color_system="standard")
    render(b.build(), console)
    text = out.getvalue()
    assert "\x1b[" in text  # styled
    assert text.count("▶") + text.count("◀") == 5
    assert f"… {len(CONVERSATION) - 5} more frames" in text

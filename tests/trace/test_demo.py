from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from synack.cli.main import main
from synack.cli.tour import MSL, TourResult, run_tour
from synack.cli.trace import trace_pcap
from synack.tcp.states import State
from synack.trace.browser import Browser
from synack.trace.model import Note, StateChange, state_name
from synack.wire.pcap import read_pcap
from tests.trace.conftest import OVERLAPS_JS, needs_chromium
from tests.trace.test_truth import check_truth

S = State


@pytest.fixture(scope="module")
def tour(tmp_path_factory: pytest.TempPathFactory) -> tuple[TourResult, str]:
    out = tmp_path_factory.mktemp("tour")
    text = io.StringIO()
    result = run_tour(out, seed=7, console=Console(file=text, width=110, color_system=None))
    return result, text.getvalue()


def test_every_stage_happens_and_is_narrated(tour: tuple[TourResult, str]) -> None:
    result, text = tour
    notes = [it.text for it in result.trace.items if isinstance(it, Note)]
    assert [n.split(".")[0] for n in notes] == ["1", "2", "3", "4", "5", "6", "7"]
    for needle in ("ARP", "handshake", "chat", "lost", "UDP", "TIME-WAIT", "closed port"):
        assert needle in text
    assert f"MSL is shortened to {MSL:g} s" in text
    assert result.retransmitted and result.refused
    assert len(result.time_reply) == len("2026-01-01 00:00:02")
    assert '{"type":"welcome","nick":"ann","users":["ann"]}' in text
    assert str(result.pcap) in text and str(result.html) in text


def test_the_trace_shows_the_textbook_states_of_both_ends(tour: tuple[TourResult, str]) -> None:
    trace = tour[0].trace
    chat, refused = trace.connections
    assert chat.server[1] == 8898 and refused.server[1] == 9
    assert not chat.inferred  # recorded by synack's own connections

    def path(lane: str, conn: int) -> list[State]:
        return [c.new for c in trace.state_changes if c.lane == lane and c.conn == conn]

    a, b = "172.16.10.1", "172.16.10.2"
    assert path(a, chat.index) == [
        S.SYN_SENT,
        S.ESTABLISHED,
        S.FIN_WAIT_1,
        S.FIN_WAIT_2,
        S.TIME_WAIT,
        S.CLOSED,
    ]
    assert path(b, chat.index)[-5:] == [
        S.SYN_RECEIVED,
        S.ESTABLISHED,
        S.CLOSE_WAIT,
        S.LAST_ACK,
        S.CLOSED,
    ]
    assert path(a, refused.index) == [S.SYN_SENT, S.CLOSED]
    # TIME-WAIT lasted 2*MSL of virtual time.
    tw = [c for c in trace.state_changes if c.lane == a and c.conn == chat.index]
    assert tw[-1].time - tw[-2].time == pytest.approx(2 * MSL, abs=0.01)
    assert all(isinstance(c, StateChange) for c in tw)


def test_one_segment_lost_then_retransmitted_and_the_rest_of_the_tour(
    tour: tuple[TourResult, str],
) -> None:
    events = tour[0].trace.events
    lost = [e for e in events if e.lost]
    assert len(lost) == 1 and lost[0].tcp is not None and lost[0].tcp.length > 0
    resent = [
        e
        for e in events
        if e.tcp is not None and e.tcp.retransmission and e.tcp.seq == lost[0].tcp.seq
    ]
    assert len(resent) == 1 and resent[0].time > lost[0].time
    protocols = [e.protocol for e in events]
    assert protocols[:4] == ["ARP", "ARP", "ICMP", "ICMP"]
    assert protocols.count("UDP") == 2
    udp = [e for e in events if e.protocol == "UDP"]
    assert (udp[0].src, udp[0].dst) == ("172.16.10.1", "172.16.20.2")
    # The router's own ARP on the far side shares the router's column.
    lanes = {lane.key: lane.name for lane in tour[0].trace.lanes}
    assert list(lanes.values()) == ["A", "B", "router", "C"]
    assert any(e.src == "172.16.10.254" and e.dst == "172.16.20.2" for e in events)
    rst = events[-1]
    assert rst.tcp is not None and rst.tcp.flag_text == "RST,ACK"


def test_pcap_holds_every_frame_and_traces_back(tour: tuple[TourResult, str]) -> None:
    result = tour[0]
    records = list(read_pcap(str(result.pcap)))
    assert [r.data for r in records] == [e.frame for e in result.trace.events]
    again = trace_pcap(str(result.pcap))
    chat = again.connections[0]
    assert chat.inferred
    assert chat.final == (S.TIME_WAIT, S.CLOSED)  # a pcap cannot show TIME-WAIT ending
    assert again.connections[1].final == (S.CLOSED, S.CLOSED)


@pytest.mark.skipif(shutil.which("tshark") is None, reason="needs tshark (installed by .ci/run)")
def test_tshark_finds_no_malformed_frame_or_bad_checksum(tour: tuple[TourResult, str]) -> None:
    result = tour[0]
    bad = (
        "_ws.malformed || ip.checksum.status == 0 || tcp.checksum.status == 0 || "
        "udp.checksum.status == 0 || icmp.checksum.status == 0"
    )
    # checksum.status: 0 = bad, 1 = good (Wireshark's proto_checksum_enum_e).
    proc = subprocess.run(
        [
            "tshark",
            "-r",
            str(result.pcap),
            "-o",
            "ip.check_checksum:TRUE",
            "-o",
            "tcp.check_checksum:TRUE",
            "-o",
            "udp.check_checksum:TRUE",
            "-Y",
            bad,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == ""
    count = subprocess.run(
        ["tshark", "-r", str(result.pcap)], capture_output=True, text=True, timeout=120
    )
    assert len(count.stdout.strip().splitlines()) == len(result.trace.events)


def test_a_seed_reproduces_the_run_bit_for_bit(tmp_path: Path) -> None:
    quiet = Console(file=io.StringIO())
    one = run_tour(tmp_path / "one", seed=3, console=quiet)
    two = run_tour(tmp_path / "two", seed=3, console=quiet)
    other = run_tour(tmp_path / "other", seed=4, console=quiet)
    assert one.pcap.read_bytes() == two.pcap.read_bytes()
    assert one.pcap.read_bytes() != other.pcap.read_bytes()
    assert one.html.read_text() == two.html.read_text()


def test_synack_demo_command_writes_its_files(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "synack", "demo", "--out", str(tmp_path / "d"), "--seed", "5"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    for name in ("demo.pcap", "demo.html", "chat.txt", "chat.html"):
        assert (tmp_path / "d" / name).exists(), name
    assert "TIME-WAIT" in proc.stdout and "demo.html" in proc.stdout


@needs_chromium
def test_demo_page_in_the_browser(tour: tuple[TourResult, str], browser: Browser) -> None:
    result = tour[0]
    browser.open(result.html)
    assert browser.console_errors() == []
    n = len(result.trace.events)
    assert browser.evaluate("document.querySelectorAll('#sequence .arrow').length") == n
    assert browser.evaluate("document.querySelectorAll('#sequence .arrow.lost').length") == 1
    states = browser.evaluate(
        "Array.from(new Set(Array.from(document.querySelectorAll('#sequence .state-label'))"
        ".map(e => e.getAttribute('data-state'))))"
    )
    assert {"SYN-SENT", "ESTABLISHED", "TIME-WAIT", "CLOSE-WAIT", "LAST-ACK"} <= set(states)
    lanes = browser.evaluate(
        "Array.from(document.querySelectorAll('#sequence .lane-name')).map(e => e.textContent)"
    )
    assert [name.split()[0] for name in lanes] == ["A", "B", "router", "C"]


def test_the_demo_trace_is_its_connections_history(tour: tuple[TourResult, str]) -> None:
    result = tour[0]
    assert len(result.connections) == 3  # the chat (both ends) and the refused SYN
    check_truth(result.trace, result.connections)
    # B listened before A's SYN: the chat connection's B starts in LISTEN.
    chat = result.trace.connections[0]
    syn = next(e.tcp for e in result.trace.events if e.tcp is not None)
    assert syn.before == (State.CLOSED, State.LISTEN) and chat.initial[1] is State.CLOSED


def test_json_lines_of_the_demo_pcap_match_the_recorded_trace(
    tour: tuple[TourResult, str], capsys: pytest.CaptureFixture[str]
) -> None:
    result = tour[0]
    assert main(["trace", str(result.pcap), "--json"]) == 0
    frames = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [f["index"] for f in frames] == list(range(len(result.trace.events)))
    # The states the capture implies are the ones the connections recorded, frame by frame.
    recorded = result.trace.changes_by_frame()
    for f in frames:
        inferred = [c.split(" (")[0] for c in f["tcp"]["changes"]] if f["tcp"] else []
        assert inferred == [
            f"{c.lane}:{c.port}: {state_name(c.old)}->{c.new.value}"
            for c in recorded.get(f["index"], [])
        ]
    assert all(f["checksum"] == "ok" for f in frames)  # synack fills every checksum in
    tcp = [f for f in frames if f["tcp"] is not None]
    syn, syn_ack = tcp[0], tcp[1]
    assert syn["tcp"]["flags"] == ["SYN"] and syn_ack["tcp"]["flags"] == ["SYN", "ACK"]
    assert syn_ack["tcp"]["options"]["wscale"] == 3 and syn_ack["tcp"]["options"]["mss"] == 1460
    assert [e["before"] for e in syn["tcp"]["ends"]] == ["CLOSED", "LISTEN"]
    assert all(e["inferred"] for f in tcp for e in f["tcp"]["ends"])
    # The segment the tour lost is in the pcap once (where it was lost) and again resent.
    assert sum("retransmission" in f["marks"] for f in frames) == 1


def test_the_demo_pcap_reads_at_80_columns(
    tour: tuple[TourResult, str], capsys: pytest.CaptureFixture[str]
) -> None:
    result = tour[0]
    assert main(["trace", str(result.pcap), "--width", "80"]) == 0
    lines = capsys.readouterr().out.splitlines()
    diagram = lines[: next(i for i, ln in enumerate(lines) if ln.startswith("connection 0"))]
    assert all(len(ln) <= 80 for ln in diagram)
    header = diagram[:2]
    for lane in result.trace.lanes:  # every column's name whole, none run into another
        assert any(f" {lane.key} " in f" {ln} " for ln in header), (lane.key, header)
    text = "\n".join(diagram)
    # B answered the first SYN: from the capture alone it listened from the start.
    assert "LISTEN (inferred)" in diagram[2]
    assert "…" not in text  # nothing cut
    assert "len=69 (retransmission)" in text
    # Both SYNs show their options: the SYN-ACK's window scale explains win=262144.
    assert text.count("<mss 1460,sackOK,wscale 3>") == 3  # A's two SYNs and B's SYN-ACK
    assert "SYN,ACK seq=0 ack=1 win=65535 <mss 1460,sackOK,wscale 3>" in text


@needs_chromium
def test_no_label_of_the_diagrams_overlaps_another_or_a_box(
    tour: tuple[TourResult, str], browser: Browser
) -> None:
    browser.open(tour[0].html)
    found = json.loads(browser.evaluate(OVERLAPS_JS))
    counts = {row[1]: row[2] for row in found if row[0] == "count"}
    assert counts["sequence"] > 60 and counts["state-diagram"] > 20  # the check saw the labels
    assert [row for row in found if row[0] != "count"] == []

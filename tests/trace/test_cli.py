from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from synack.cli.main import main
from synack.cli.trace import trace_pcap
from synack.tcp.states import State
from synack.wire.pcap import LINKTYPE_RAW, PcapWriter
from tests.trace.frames import CONVERSATION, RA, A, B, S, tcp_frame


def write_pcap(path: Path, raw: bool = False) -> None:
    with PcapWriter(str(path), LINKTYPE_RAW if raw else 1) as w:
        for t, f in CONVERSATION:
            if raw and f[12:14] != b"\x08\x00":
                continue  # raw IP carries no ARP
            w.write(1_700_000_000 + t, f[14:] if raw else f)


def test_trace_prints_the_diagram_and_writes_the_page(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pcap, html = tmp_path / "c.pcap", tmp_path / "c.html"
    write_pcap(pcap)
    assert main(["trace", str(pcap), "--html", str(html), "--width", "110"]) == 0
    out, err = capsys.readouterr()
    assert "SYN,ACK seq=0 ack=1 win=64240" in out
    assert out.count("▶") + out.count("◀") == len(CONVERSATION)
    for state in ("SYN-SENT", "SYN-RECEIVED", "ESTABLISHED", "TIME-WAIT", "LAST-ACK"):
        assert state in out
    assert f"wrote {html}" in err
    page = html.read_text(encoding="utf-8")
    assert page.count('<g class="arrow') == len(CONVERSATION)


def test_raw_ip_pcap_is_traced_too(tmp_path: Path) -> None:
    pcap = tmp_path / "raw.pcap"
    write_pcap(pcap, raw=True)
    trace = trace_pcap(str(pcap))
    assert [e.protocol for e in trace.events] == ["TCP"] * 10
    assert trace.connections[0].final == (State.TIME_WAIT, State.CLOSED)


@pytest.mark.parametrize(
    ("content", "needle"),
    [(None, "no such file"), (b"not a pcap at all, no", "not a readable pcap")],
)
def test_bad_input_is_one_line_and_status_2(
    tmp_path: Path, content: bytes | None, needle: str
) -> None:
    path = tmp_path / "x.pcap"
    if content is not None:
        path.write_bytes(content)
    proc = subprocess.run(
        [sys.executable, "-m", "synack", "trace", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and needle in proc.stderr, proc.stderr


def test_html_into_missing_directory_is_a_usage_error(tmp_path: Path) -> None:
    pcap = tmp_path / "c.pcap"
    write_pcap(pcap)
    assert main(["trace", str(pcap), "-q", "--html", str(tmp_path / "no" / "x.html")]) == 2


# --- two Linux kernels talking, captured by tcpdump --------------------------------------


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("tcpdump") is None,
    reason="needs root and tcpdump to capture the kernel's own TCP on loopback",
)
def test_kernel_capture_states_inferred_for_both_ends(tmp_path: Path) -> None:
    pcap = tmp_path / "kernel.pcap"
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]
    closed.close()  # nobody listens there
    dump = subprocess.Popen(
        [
            "tcpdump",
            "-i",
            "lo",
            "-Z",
            "root",  # write the file as root: pytest's tmp_path is private to root
            "-U",
            "--immediate-mode",  # deliver each packet now, not in ring-buffer blocks
            "-n",
            "-w",
            str(pcap),
            f"tcp port {port} or tcp port {closed_port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        assert dump.stderr is not None
        line = dump.stderr.readline()  # "listening on lo ..." once the capture runs
        assert b"listening" in line, line
        time.sleep(0.3)
        client = socket.socket()
        client.settimeout(5)
        server.settimeout(5)
        client.bind(("127.0.0.2", 0))  # a second address, so the hosts get two columns
        client.connect(("127.0.0.1", port))
        conn, _ = server.accept()
        client.sendall(b"hello")
        assert conn.recv(16) == b"hello"
        conn.sendall(b"world!")
        assert client.recv(16) == b"world!"
        client.close()  # A closes first: FIN-WAIT-1 ... TIME-WAIT
        assert conn.recv(16) == b""
        conn.close()
        probe = socket.socket()
        probe.bind(("127.0.0.2", 0))
        with pytest.raises(ConnectionRefusedError):
            probe.connect(("127.0.0.1", closed_port))
        probe.close()
        time.sleep(0.3)
    finally:
        server.close()
        dump.terminate()
        _, rest = dump.communicate(timeout=10)
    trace = trace_pcap(str(pcap))
    assert trace.events, rest
    assert [lane.key for lane in trace.lanes] == ["127.0.0.2", "127.0.0.1"]
    chat, refused = trace.connections
    assert chat.server[1] == port and refused.server[1] == closed_port
    assert chat.initial == (State.CLOSED, State.LISTEN)
    assert chat.final == (State.TIME_WAIT, State.CLOSED)
    assert refused.initial == (State.CLOSED, State.CLOSED)
    assert refused.final == (State.CLOSED, State.CLOSED)
    path = [(c.lane, c.new) for c in trace.state_changes if c.conn == chat.index]
    assert [s for lane, s in path if lane == "127.0.0.2"] == [
        State.SYN_SENT,
        State.ESTABLISHED,
        State.FIN_WAIT_1,
        State.FIN_WAIT_2,
        State.TIME_WAIT,
    ]
    assert [s for lane, s in path if lane == "127.0.0.1"] == [
        State.SYN_RECEIVED,
        State.ESTABLISHED,
        State.CLOSE_WAIT,
        State.LAST_ACK,
        State.CLOSED,
    ]
    data = [e.tcp for e in trace.events if e.tcp is not None and e.tcp.length]
    assert [(d.rel_seq, d.length) for d in data] == [(1, 5), (1, 6)]
    assert not any(e.tcp.retransmission for e in trace.events if e.tcp is not None)


def test_one_connection_out_of_several(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pcap = tmp_path / "two.pcap"
    with PcapWriter(str(pcap)) as w:
        for t, f in CONVERSATION:
            w.write(t, f)
        w.write(1.0, tcp_frame(A, B, 40001, 9, S, 77))
        w.write(1.1, tcp_frame(B, A, 9, 40001, RA, 0, 78))
    assert main(["trace", str(pcap), "--connection", "1", "--width", "100"]) == 0
    out = capsys.readouterr().out
    assert out.count("▶") + out.count("◀") == 2
    assert "RST,ACK" in out and "who-has" not in out
    assert "connection 1: 172.16.10.1:40001 ↔ 172.16.10.2:9" in out
    assert main(["trace", str(pcap), "-c", "2"]) == 2
    assert "has 2 TCP connection(s), numbered 0 to 1" in capsys.readouterr().err


def test_a_capture_cut_short_is_traced_up_to_the_cut(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pcap = tmp_path / "cut.pcap"
    write_pcap(pcap)
    pcap.write_bytes(pcap.read_bytes()[:-10])  # the last record loses its tail
    trace = trace_pcap(str(pcap))
    assert len(trace.events) == len(CONVERSATION) - 1
    assert f"damaged after record {len(CONVERSATION) - 1}" in capsys.readouterr().err


@pytest.mark.parametrize("width", ["-5", "0", "59"])
def test_width_below_the_diagram_floor_is_a_usage_error(tmp_path: Path, width: str) -> None:
    pcap = tmp_path / "c.pcap"
    write_pcap(pcap)
    assert main(["trace", str(pcap), "--width", width]) == 2

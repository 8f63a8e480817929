"""``synack trace FILE.pcap --json`` on a Linux kernel's own TCP, captured by tcpdump in a
network namespace this test creates (and deletes)."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from synack.cli.main import main
from synack.cli.trace import trace_pcap
from synack.trace.html import render_html
from synack.trace.layers import dissect
from synack.wire.pcap import PcapWriter
from tests.trace.frames import CONVERSATION

KEYS = [
    "index",
    "time",
    "rel_time",
    "src",
    "dst",
    "protocol",
    "length",
    "checksum",
    "marks",
    "summary",
    "tcp",
]
TCP_KEYS = [
    "connection",
    "flags",
    "seq",
    "ack",
    "rel_seq",
    "rel_ack",
    "len",
    "window",
    "window_scaled",
    "options",
    "ends",
    "changes",
]

# Runs inside the namespace: a listener on 127.0.0.1, a client from 127.0.0.2 that
# sends "hello", gets "world!" and closes first, then a SYN to a port nobody has.
KERNEL_SIDE = r"""
import socket, sys
server = socket.socket(); server.bind(("127.0.0.1", 7000)); server.listen()
client = socket.socket(); client.settimeout(5); client.bind(("127.0.0.2", 0))
client.connect(("127.0.0.1", 7000)); conn, _ = server.accept(); conn.settimeout(5)
client.sendall(b"hello"); assert conn.recv(16) == b"hello"
conn.sendall(b"world!"); assert client.recv(16) == b"world!"
client.close(); assert conn.recv(16) == b""; conn.close()
probe = socket.socket(); probe.bind(("127.0.0.2", 0))
try:
    probe.connect(("127.0.0.1", 7001))
except ConnectionRefusedError:
    print("refused")
"""


@pytest.fixture
def namespace() -> Iterator[str]:
    ns = f"synack-{secrets.token_hex(4)}"
    subprocess.run(["ip", "netns", "add", ns], check=True, capture_output=True, timeout=10)
    try:
        subprocess.run(
            ["ip", "-n", ns, "link", "set", "lo", "up"], check=True, capture_output=True, timeout=10
        )
        yield ns
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)
        assert not os.path.exists(f"/run/netns/{ns}")


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("tcpdump") is None or shutil.which("ip") is None,
    reason="needs root, ip and tcpdump to capture a kernel's TCP in a namespace of its own",
)
def test_json_of_a_kernel_capture(
    namespace: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pcap = tmp_path / "kernel.pcap"
    dump = subprocess.Popen(
        ["ip", "netns", "exec", namespace, "tcpdump", "-i", "lo", "-Z", "root", "-U",
         "--immediate-mode", "-n", "-w", str(pcap), "tcp"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert dump.stderr is not None
        assert b"listening" in dump.stderr.readline()  # the capture runs
        run = subprocess.run(
            ["ip", "netns", "exec", namespace, sys.executable, "-c", KERNEL_SIDE],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert run.returncode == 0 and run.stdout.strip() == "refused", run.stderr
    finally:
        dump.terminate()
        dump.communicate(timeout=10)
    assert main(["trace", str(pcap), "--json"]) == 0
    frames = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert frames and all(list(f) == KEYS for f in frames)
    assert all(list(f["tcp"]) == TCP_KEYS for f in frames)
    assert [f["index"] for f in frames] == list(range(len(frames)))
    assert frames[0]["rel_time"] == 0.0
    # Loopback leaves most TCP checksums unfilled (offload): unverified, never "bad";
    # the kernel's RST is checksummed in software.
    statuses = [f["checksum"] for f in frames]
    assert set(statuses) <= {"ok", "unverified"} and statuses.count("unverified") > len(frames) // 2
    for f in frames:
        assert ("checksum-unverified" in f["marks"]) == (f["checksum"] == "unverified")
    chat = [f for f in frames if f["tcp"]["connection"] == 0]
    refused = [f for f in frames if f["tcp"]["connection"] == 1]
    syn, syn_ack = chat[0], chat[1]
    assert syn["src"].startswith("127.0.0.2:") and syn["dst"] == "127.0.0.1:7000"
    assert syn["tcp"]["flags"] == ["SYN"] and syn["tcp"]["rel_seq"] == 0
    assert syn["tcp"]["rel_ack"] is None
    assert syn_ack["tcp"]["flags"] == ["SYN", "ACK"] and syn_ack["tcp"]["rel_ack"] == 1
    for f in (syn, syn_ack):  # Linux offers MSS, SACK, timestamps and window scaling
        options = f["tcp"]["options"]
        assert options["mss"] and options["sack_permitted"] and options["timestamps"]
        assert options["wscale"] is not None
    ends = syn["tcp"]["ends"]
    assert [(e["role"], e["before"], e["after"], e["inferred"]) for e in ends] == [
        ("sender", "CLOSED", "SYN-SENT", True),
        ("receiver", "LISTEN", "SYN-RECEIVED", True),
    ]
    # The first ACK after the handshake: its window is scaled by the SYN-ACK's shift.
    third = chat[2]["tcp"]
    assert third["window_scaled"] == third["window"] << syn["tcp"]["options"]["wscale"]
    data = [(f["tcp"]["rel_seq"], f["tcp"]["len"]) for f in chat if f["tcp"]["len"]]
    assert data == [(1, 5), (1, 6)]
    assert not any(set(f["marks"]) - {"checksum-unverified"} for f in frames)
    changes = [c.split(": ", 1)[1] for f in chat for c in f["tcp"]["changes"]]
    assert changes[-1] == "LAST-ACK->CLOSED (rcv ACK of FIN)"
    assert "FIN-WAIT-2->TIME-WAIT (rcv FIN)" in changes
    assert [f["tcp"]["flags"] for f in refused] == [["SYN"], ["RST", "ACK"]]
    assert refused[1]["tcp"]["ends"][0]["before"] == "CLOSED"

    # The diagram and the page say the same: unverified, with a legend; never "bad".
    trace = trace_pcap(str(pcap))
    assert not any("bad-checksum" in e.summary for e in trace.events)
    assert main(["trace", str(pcap), "--width", "100"]) == 0
    out = capsys.readouterr().out
    assert "checksum unverified, not bad" in out and "bad checksum" not in out
    page = render_html(trace)
    assert "checksum unverified" in page and "bad checksum</td>" not in page
    # The dissection too: the checksum field says unverified, no layer says bad.
    syn_frame = next(e for e in trace.events if e.tcp is not None and e.checksum.value != "ok")
    tcp_layer = next(layer for layer in dissect(syn_frame.frame, syn_frame.linktype)
                     if layer.name.startswith("TCP"))  # fmt: skip
    assert tcp_layer.name == "TCP"
    checksum = next(f for f in tcp_layer.fields if f.name == "Checksum")
    assert "unverified" in checksum.value and "bad" not in checksum.value


def test_json_keeps_going_past_damaged_frames(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pcap = tmp_path / "damaged.pcap"
    first_t, first = CONVERSATION[0]
    # A TCP segment with payload (IPv4 protocol byte 6, more than 54 + 4 header bytes).
    corrupt = bytearray(next(f for _, f in CONVERSATION if f[23] == 6 and len(f) > 58))
    corrupt[-1] ^= 0xFF  # a payload byte: the TCP checksum no longer adds up
    with PcapWriter(str(pcap), 1) as w:
        w.write(1_700_000_000 + first_t, first)
        w.write(1_700_000_001, first[:20])  # cut inside the IPv4 header
        w.write(1_700_000_002, b"\xff" * 60)  # nothing parses beyond Ethernet
        w.write(1_700_000_003, bytes(corrupt))
    assert main(["trace", str(pcap), "--json"]) == 0
    frames = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [f["index"] for f in frames] == [0, 1, 2, 3]
    assert all(list(f) == KEYS for f in frames)
    assert frames[1]["protocol"] == "malformed" and frames[1]["tcp"] is None
    assert frames[2]["tcp"] is None
    assert frames[3]["tcp"] is not None
    assert frames[3]["checksum"] == "bad" and "checksum-bad" in frames[3]["marks"]


def test_json_of_one_connection(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pcap = tmp_path / "c.pcap"
    with PcapWriter(str(pcap), 1) as w:
        for t, f in CONVERSATION:
            w.write(1_700_000_000 + t, f)
    assert main(["trace", str(pcap), "--json", "--connection", "0"]) == 0
    frames = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert frames and all(f["tcp"] is not None and f["tcp"]["connection"] == 0 for f in frames)
    assert frames[0]["tcp"]["flags"] == ["SYN"]

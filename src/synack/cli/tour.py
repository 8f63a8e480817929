"""``synack demo``: the guided tour on a simulated network, narrated stage by stage.

Hosts A 172.16.10.1/24 and B 172.16.10.2/24 share one switch; host C
172.16.20.2/24 sits on a second switch behind a router (172.16.10.254 /
172.16.20.254), so the subnet rule decides on-link versus via-gateway. Every
host is synack's own stack (:class:`synack.stack.host.Host`), every frame is
built by synack's wire code and carried by :class:`synack.links.lan.Lan` on a
virtual clock: nothing touches a real interface, nothing sleeps, and a seed
reproduces the run (ISNs, ports, IP identifiers).

The stages: ARP resolution, the three-way handshake, a framed chat exchange
(docs/protocol.md §1-2) on synack's TCP, one data segment lost on purpose and its
retransmission, a UDP time query to C through the router, the four-way close
with TIME-WAIT (MSL shortened), and a SYN to a closed port answered by RST.
Every frame and every TCP state change goes into one trace, printed as
sequence diagrams stage by stage and written as demo.pcap and demo.html.

Layer: cli. May import every other package; nothing imports it.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface
from pathlib import Path

from rich.console import Console
from rich.text import Text

from synack.apps.chat import messages as chat
from synack.apps.time.fmtproto import FormatService
from synack.core import framing
from synack.links.lan import HostNode, Lan, RouterNode
from synack.stack import events as sev
from synack.stack.host import Host, HostConfig, TcpStream, UdpEndpoint
from synack.stack.router import Router, RouterInterface
from synack.tcp import events as tev
from synack.tcp.config import TcpConfig
from synack.tcp.connection import TcpConnection
from synack.tcp.states import State
from synack.trace.builder import TraceBuilder
from synack.trace.html import write_html
from synack.trace.model import Note, Trace
from synack.trace.terminal import SequenceDiagram
from synack.wire import ethernet as weth
from synack.wire import ipv4 as wip
from synack.wire import tcp as wtcp
from synack.wire.errors import MalformedPacket
from synack.wire.pcap import PcapWriter

# The simulated network's clock starts here (2026-01-01 00:00:00 UTC), so a
# seed reproduces demo.pcap byte for byte, timestamps included.
EPOCH = 1_767_225_600.0
MSL = 0.5  # seconds; RFC 9293 §3.4.2 suggests 2 minutes. TIME-WAIT lasts 2*MSL.
CHAT_PORT = 8898
TIME_PORT = 9000
CLOSED_PORT = 9
LINK_DELAY = 0.001  # one-way, per wire

A_IP = IPv4Address("172.16.10.1")
B_IP = IPv4Address("172.16.10.2")
C_IP = IPv4Address("172.16.20.2")
R1_IP = IPv4Address("172.16.10.254")
R2_IP = IPv4Address("172.16.20.254")
MASK_A = IPv4Interface("172.16.10.1/24")


def _mac(last: int) -> bytes:
    return bytes([0x02, 0x53, 0x59, 0x4E, 0x00, last])  # locally administered, "SYN"


class _Recorder:
    """Collects what the nodes put on the wires, once per frame, at its sender."""

    def __init__(self, names: dict[str, str]) -> None:
        self.builder = TraceBuilder(names=names)
        self.frames: list[tuple[float, bytes]] = []

    def frame(self, now: float, frame: bytes, *, lost_where: str | None = None) -> None:
        self.frames.append((now, frame))
        self.builder.add_frame(
            now, frame, link=None, lost=lost_where is not None, lost_where=lost_where
        )

    def observe(self, record: object) -> None:
        if isinstance(record, sev.TcpStateTrace):
            self.builder.add_change(record.local, record.remote, record.change)


class _RecordingHostNode(HostNode):
    """A host on the LAN whose outgoing frames are recorded; it can lose one on purpose."""

    def __init__(self, host: Host, recorder: _Recorder, clock: Callable[[], float]) -> None:
        super().__init__(host)
        self.recorder = recorder
        self.clock = clock
        self.drop_next: Callable[[bytes], bool] | None = None
        self.dropped: list[bytes] = []

    def _out(self, frames: list[tuple[int, bytes]], now: float) -> list[tuple[int, bytes]]:
        kept = []
        for port, frame in frames:
            if self.drop_next is not None and self.drop_next(frame):
                self.drop_next = None
                self.dropped.append(frame)
                self.recorder.frame(now, frame, lost_where="the wire from A to the switch")
                continue
            self.recorder.frame(now, frame)
            kept.append((port, frame))
        return kept

    def receive(self, port: int, frame: bytes, now: float) -> list[tuple[int, bytes]]:
        return self._out(super().receive(port, frame, now), now)

    def handle_timer(self, now: float) -> list[tuple[int, bytes]]:
        return self._out(super().handle_timer(now), now)

    def flush(self) -> list[tuple[int, bytes]]:
        return self._out(super().flush(), self.clock())


class _RecordingRouterNode(RouterNode):
    """The router; only what it says itself is recorded (ARP, ICMP from its own
    addresses): a forwarded packet was already recorded at the host that sent it."""

    def __init__(self, router: Router, recorder: _Recorder, own: set[IPv4Address]) -> None:
        super().__init__(router)
        self.recorder = recorder
        self.own = own

    def _out(self, frames: list[tuple[int, bytes]], now: float) -> list[tuple[int, bytes]]:
        for _, frame in frames:
            if self._originated(frame):
                self.recorder.frame(now, frame)
        return frames

    def _originated(self, frame: bytes) -> bool:
        try:
            eth = weth.parse(frame)
            if eth.ethertype == weth.ETHERTYPE_ARP:
                return True
            return wip.parse(eth.payload, verify_checksum=False).src in self.own
        except MalformedPacket:
            return True

    def receive(self, port: int, frame: bytes, now: float) -> list[tuple[int, bytes]]:
        return self._out(super().receive(port, frame, now), now)

    def handle_timer(self, now: float) -> list[tuple[int, bytes]]:
        return self._out(super().handle_timer(now), now)


@dataclass(slots=True)
class TourResult:
    trace: Trace
    pcap: Path
    html: Path
    frames: int
    chat_lines: list[str] = field(default_factory=list)
    time_reply: str = ""
    retransmitted: bool = False
    refused: bool = False
    final_states: dict[str, str] = field(default_factory=dict)
    # The TCP connections the tour made, whose own histories the trace must show.
    connections: list[TcpConnection] = field(default_factory=list)


class Tour:
    """Builds the network and runs the stages; ``pause`` is called between stages."""

    def __init__(
        self,
        out_dir: Path,
        *,
        seed: int = 1,
        console: Console | None = None,
        pause: Callable[[str], None] | None = None,
        width: int | None = None,
    ) -> None:
        self.out_dir = out_dir
        self.seed = seed
        self.console = console or Console(highlight=False)
        self.pause = pause
        self.width = width or max(min(self.console.width, 120), 90)
        rng = random.Random(seed)
        names = {
            str(A_IP): "A",
            str(B_IP): "B",
            str(R1_IP): "router",
            str(R2_IP): "router",
            str(C_IP): "C",
        }
        self.rec = _Recorder(names)
        self.lan = Lan(delay=LINK_DELAY, seed=seed)
        tcp = TcpConfig(msl=MSL)
        self.hosts: dict[str, Host] = {}
        self.nodes: dict[str, _RecordingHostNode] = {}
        sw1, switch1 = self.lan.switch()
        sw2, switch2 = self.lan.switch()
        for name, ip, gw, last, sw, switch in (
            ("A", A_IP, R1_IP, 1, sw1, switch1),
            ("B", B_IP, R1_IP, 2, sw1, switch1),
            ("C", C_IP, R2_IP, 3, sw2, switch2),
        ):
            host = Host(
                HostConfig(
                    mac=_mac(last),
                    interface=IPv4Interface(f"{ip}/24"),
                    gateway=gw,
                    name=name,
                    tcp=tcp,
                ),
                rng=random.Random(rng.getrandbits(64)),
                isn_secret=rng.randbytes(16),
            )
            host.observers.append(self.rec.observe)
            node = _RecordingHostNode(host, self.rec, lambda: self.lan.now)
            index = self.lan.add(node)
            self.lan.connect(index, 0, sw, switch.add_port(), name)
            self.hosts[name] = host
            self.nodes[name] = node
        router = Router(
            [
                RouterInterface(_mac(0xFE), IPv4Interface(f"{R1_IP}/24")),
                RouterInterface(_mac(0xFD), IPv4Interface(f"{R2_IP}/24")),
            ]
        )
        r_index = self.lan.add(_RecordingRouterNode(router, self.rec, {R1_IP, R2_IP}))
        for port, (sw, switch) in enumerate(((sw1, switch1), (sw2, switch2))):
            self.lan.connect(r_index, port, sw, switch.add_port(), "router")
        self.result = TourResult(
            trace=TraceBuilder().build(),
            pcap=out_dir / "demo.pcap",
            html=out_dir / "demo.html",
            frames=0,
        )
        self._stage_title = ""

    # -- narration -----------------------------------------------------------------

    def say(self, text: str) -> None:
        self.console.print(Text(text))

    def stage(self, number: int, title: str, explain: str) -> None:
        if self.pause is not None and number > 1:
            self.pause(title)
        self._stage_title = f"{number}. {title}"
        self.rec.builder.add_note(self.lan.now, self._stage_title)
        self.console.rule(f"[bold]{number}. {title}")
        self.say(explain)

    def show(self) -> None:
        """Print the sequence diagram of the stage that just ran."""
        trace = self.rec.builder.build()
        # The stage's items follow its note.
        start = 1 + next(
            i
            for i, it in enumerate(trace.items)
            if isinstance(it, Note) and it.text == self._stage_title
        )
        window = trace.window(start)
        for line in SequenceDiagram(window, self.width, origin=0.0).lines():
            self.console.print(line, no_wrap=True, overflow="ignore", crop=False)

    def run_until(self, done: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
        if not self.lan.run_until(done, timeout=timeout):
            raise RuntimeError(f"the tour got stuck waiting for {what}")

    # -- the stages ----------------------------------------------------------------

    def run(self) -> TourResult:
        a, b, c = self.hosts["A"], self.hosts["B"], self.hosts["C"]
        self.console.print(
            Text.assemble(
                ("synack demo", "bold"),
                " — a simulated network, every frame built and parsed by synack\n",
                "  A 172.16.10.1/24 and B 172.16.10.2/24 on one switch; C 172.16.20.2/24 on "
                "another, behind a router (172.16.10.254 | 172.16.20.254).\n",
                f"  Virtual clock, one-way wire delay {LINK_DELAY * 1000:g} ms, seed {self.seed}.",
            )
        )
        self._arp(a, b, c)
        stream_a, stream_b = self._handshake(a, b)
        self._chat(stream_a, stream_b)
        self._loss(stream_a, stream_b)
        self._time_query(a, c)
        self._close(a, stream_a, stream_b)
        self._refused(a)
        return self._finish()

    def _arp(self, a: Host, b: Host, c: Host) -> None:
        net = MASK_A.network
        self.stage(
            1,
            "ARP: who has 172.16.10.2?",
            f"A's mask is {net.netmask}. 172.16.10.2 AND mask = {net.network_address} = A's own "
            "network, so B is on-link: A asks by broadcast who has 172.16.10.2 (ARP), B answers "
            "with its MAC, then an ICMP echo proves the path. (172.16.20.2 AND mask = "
            "172.16.20.0: not A's network, so A will send to C via its gateway.)",
        )
        a.ping(B_IP, 1, 1, b"synack", self.lan.now)
        replies: list[object] = []

        def got_reply() -> bool:
            while (event := a.next_event()) is not None:
                replies.append(event)
            return any(isinstance(e, sev.EchoReply) for e in replies)

        self.run_until(got_reply, "the echo reply")
        self.show()
        mac = b.mac.hex(":")
        self.say(f"A now knows 172.16.10.2 is at {mac} (its ARP cache), and B learnt A's MAC too.")

    def _handshake(self, a: Host, b: Host) -> tuple[TcpStream, TcpStream]:
        self.stage(
            2,
            "the three-way handshake",
            f"B listens on port {CHAT_PORT}. A connects: SYN (A's ISN), SYN-ACK (B's ISN, "
            "acknowledging A's), ACK. Sequence numbers are shown relative to each side's ISN.",
        )
        listener = b.tcp_listen(CHAT_PORT)
        stream_a = a.tcp_connect((B_IP, CHAT_PORT), self.lan.now)
        accepted: list[TcpStream] = []

        def established() -> bool:
            got = listener.accept()
            if got is not None:
                accepted.append(got)
            return bool(accepted) and stream_a.conn.state is State.ESTABLISHED

        self.run_until(established, "the handshake")
        self.show()
        stream_b = accepted[0]
        self.result.connections += [stream_a.conn, stream_b.conn]
        stream_b.owner = stream_a.owner = self  # the host reports activity to owners
        iss_a, iss_b = stream_a.conn.iss, stream_b.conn.iss
        self.say(f"ISNs: A {iss_a}, B {iss_b} (RFC 6528: clock + keyed hash of the 4-tuple).")
        return stream_a, stream_b

    def _exchange(self, sender: TcpStream, receiver: TcpStream, message: bytes) -> bytes:
        """Send one frame (docs/protocol.md §1) and wait until the receiver has all of it."""
        decoder = framing.FrameDecoder()
        sender.send(framing.encode(message), self.lan.now)
        frames: list[bytes] = []

        def arrived() -> bool:
            data = receiver.receive(1 << 16, self.lan.now)
            if data:
                decoder.receive_data(data)
                frames.extend(bytes(f) for f in decoder.frames())
            return bool(frames)

        self.run_until(arrived, "a chat frame")
        return frames[0]

    def _chat(self, stream_a: TcpStream, stream_b: TcpStream) -> None:
        self.stage(
            3,
            "a framed chat on synack's TCP",
            "Each chat message is one frame: a 4-byte big-endian length, then UTF-8 JSON "
            "(docs/protocol.md §1-2). A says hello as 'ann'; B, the chat server, welcomes her and "
            "relays what she says.",
        )
        lines = self.result.chat_lines
        for message, reply in (
            (chat.Hello(nick="ann"), chat.Welcome(nick="ann", users=["ann"])),
            (
                chat.Say(text="hello from A"),
                chat.Msg(id=1, from_="ann", text="hello from A", ts=EPOCH + self.lan.now),
            ),
        ):
            got = self._exchange(stream_a, stream_b, chat.encode_message(message))
            lines.append(f"A → B  {got.decode()}")
            back = self._exchange(stream_b, stream_a, chat.encode_message(reply))
            lines.append(f"B → A  {back.decode()}")
        self.lan.run(until=self.lan.now + 0.5)  # let the delayed ACKs go out
        self.show()
        for line in lines:
            self.say(f"  {line}")

    def _loss(self, stream_a: TcpStream, stream_b: TcpStream) -> None:
        self.stage(
            4,
            "a lost segment and its retransmission",
            "The next data segment from A dies on the wire (on purpose). B never sees it, so "
            "B's ACKs do not move; A's retransmission timer (RTO, RFC 6298) fires and A sends "
            "the same bytes again.",
        )
        node = self.nodes["A"]

        def first_data(frame: bytes) -> bool:
            try:
                eth = weth.parse(frame)
                ip = wip.parse(eth.payload, verify_checksum=False)
                if ip.proto != wip.PROTO_TCP:
                    return False
                return bool(wtcp.parse(ip.payload, ip.src, ip.dst, verify_checksum=False).payload)
            except MalformedPacket:
                return False

        node.drop_next = first_data
        sent_at = self.lan.now
        text = "this one is lost once, then retransmitted"
        got = self._exchange(stream_a, stream_b, chat.encode_message(chat.Say(text=text)))
        self.result.retransmitted = bool(node.dropped)
        back = self._exchange(
            stream_b,
            stream_a,
            chat.encode_message(chat.Msg(id=2, from_="ann", text=text, ts=EPOCH + self.lan.now)),
        )
        self.lan.run(until=self.lan.now + 0.5)
        self.show()
        self.say(
            f"  A → B  {got.decode()}\n  B → A  {back.decode()}\n"
            f"Delivered {self.lan.now - sent_at:.2f} s (virtual) after it was first sent: "
            "TCP hides the loss from the application, only the delay shows."
        )

    def _time_query(self, a: Host, c: Host) -> None:
        self.stage(
            5,
            "a UDP time query through the router",
            "C runs the time service (format protocol, docs/protocol.md §3a) on UDP port "
            f"{TIME_PORT}. C is off-link for A, so A ARPs for its gateway 172.16.10.254 and "
            "sends the datagram to the router's MAC; the router forwards it to C. One "
            "datagram each way: no connection, no handshake, no states.",
        )
        service = FormatService()
        server: UdpEndpoint = c.udp_open(TIME_PORT)
        client: UdpEndpoint = a.udp_open(0)
        client.sendto(b"%Y-%m-%d %H:%M:%S", (C_IP, TIME_PORT), self.lan.now)
        self.run_until(lambda: bool(server.queue), "the time request")
        request = server.recvfrom()
        assert request is not None
        data, source = request
        wall = int(EPOCH + self.lan.now)
        reply = service.handle(data, str(source[0]), self.lan.now, wall)
        if reply is not None:
            server.sendto(reply, source, self.lan.now)
        self.run_until(lambda: bool(client.queue), "the time reply")
        answer = client.recvfrom()
        assert answer is not None
        self.result.time_reply = answer[0].decode(errors="replace")
        self.show()
        self.say(
            f"C answered {self.result.time_reply!r} (the simulated network's clock, local time)."
        )

    def _close(self, a: Host, stream_a: TcpStream, stream_b: TcpStream) -> None:
        self.stage(
            6,
            "the four-way close and TIME-WAIT",
            "A closes first: FIN, ACK; B reads end-of-stream, closes too: FIN, ACK. A, the "
            f"active closer, waits in TIME-WAIT for 2×MSL. MSL is shortened to {MSL:g} s for "
            "the demo (RFC 9293 suggests 2 minutes), so TIME-WAIT lasts "
            f"{2 * MSL:g} s here.",
        )
        stream_a.close(self.lan.now)

        def b_saw_eof() -> bool:
            stream_b.receive(1 << 16, self.lan.now)
            return any(isinstance(e, tev.EndOfStream) for e in stream_b.pending)

        self.run_until(b_saw_eof, "B to see A's FIN")
        stream_b.close(self.lan.now)
        self.run_until(lambda: stream_a.conn.state is State.TIME_WAIT, "TIME-WAIT")
        entered = self.lan.now
        self.run_until(lambda: stream_a.gone and stream_b.gone, "both ends to close")
        self.show()
        self.say(f"A left TIME-WAIT {self.lan.now - entered:.2f} s (virtual) after entering it.")

    def _refused(self, a: Host) -> None:
        self.stage(
            7,
            "a SYN to a closed port",
            f"Nothing listens on B's port {CLOSED_PORT}: B answers A's SYN with RST "
            "(RFC 9293 §3.10.7.1), and A's connect fails with 'connection refused'.",
        )
        stream = a.tcp_connect((B_IP, CLOSED_PORT), self.lan.now)
        self.result.connections.append(stream.conn)
        self.run_until(lambda: stream.gone, "the RST")
        self.result.refused = any(isinstance(e, tev.ConnectionRefused) for e in stream.pending)
        self.show()
        self.say("A: ConnectionRefusedError." if self.result.refused else "A: no answer.")

    def _finish(self) -> TourResult:
        trace = self.rec.builder.build()
        self.out_dir.mkdir(parents=True, exist_ok=True)
        with PcapWriter(str(self.result.pcap)) as pcap:
            for t, frame in self.rec.frames:
                pcap.write(EPOCH + t, frame)
        write_html(trace, str(self.result.html), title="synack demo: the guided tour")
        self.result.trace = trace
        self.result.frames = len(self.rec.frames)
        self.console.rule("[bold]done")
        self.say(
            f"{len(trace.events)} frames, {len(trace.state_changes)} TCP state changes, "
            f"{self.lan.now:.2f} s of virtual time.\n"
            f"  {self.result.pcap}   (open it in Wireshark, or: synack trace {self.result.pcap})\n"
            f"  {self.result.html}   (open it in a browser: every frame, layer by layer)"
        )
        return self.result


def run_tour(
    out_dir: Path,
    *,
    seed: int = 1,
    console: Console | None = None,
    pause: Callable[[str], None] | None = None,
    width: int | None = None,
) -> TourResult:
    return Tour(out_dir, seed=seed, console=console, pause=pause, width=width).run()

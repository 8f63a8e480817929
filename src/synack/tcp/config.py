"""Per-connection settings, validated once (caller mistakes raise LocalProtocolError).

Layer: tcp. Imports synack.errors.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from synack.errors import LocalProtocolError

#: The smallest MSS: IPv4's minimum MTU of 68 (RFC 791) less 20 + 20 octets.
MIN_MSS = 28
#: The initial-window choices (see TcpConfig.initial_window).
INITIAL_WINDOWS = ("rfc3390", "rfc6928")


@dataclass(frozen=True, slots=True)
class TcpConfig:
    #: The MSS we announce (what we can receive) and the most we send per
    #: segment. 536 is the RFC 9293 §3.7.1 default (MUST-15). The floor is
    #: 28: IPv4's smallest MTU, 68 (RFC 791), less 40 octets of headers.
    mss: int = 1460
    #: The smallest MSS a peer may make us send (issue 14: a SYN announcing
    #: MSS 1 made 62k one-octet segments in 2 s). A peer's MSS below this is
    #: raised to it. Why 88 and not 536: RFC 9293 §3.7.1 / RFC 6691 make the
    #: MSS follow the peer's MTU, and honest links below 576 exist (RFC 1191's
    #: plateaus of 296 and 508 octets); forcing 536 on them would send what
    #: they cannot carry. 88 is Linux's TCP_MIN_MSS, (60+60+8)-(20+20): the
    #: largest IP and TCP headers plus 8 octets, so no link that can carry a
    #: full TCP header needs less, and an attacker gets 88x fewer segments.
    min_peer_mss: int = 88
    send_buffer: int = 256 * 1024
    receive_buffer: int = 256 * 1024
    #: RFC 7323 options and RFC 2018 SACK, each offered on SYN.
    window_scale: bool = True
    timestamps: bool = True
    sack: bool = True
    #: Disable Nagle's algorithm (RFC 9293 §3.7.4 MUST-17: a way to turn it off).
    nodelay: bool = False
    #: Delayed ACK (SHLD-18): at most this long, and always under 0.5 s (MUST-40).
    delayed_ack: bool = True
    delayed_ack_timeout: float = 0.2
    #: RFC 6298: initial RTO 1 s (§2.1), minimum 1 s (§2.4), maximum >= 60 s.
    initial_rto: float = 1.0
    min_rto: float = 1.0
    max_rto: float = 60.0
    #: RFC 9293 §3.8.3 (MUST-20): R1 "negative advice" threshold and R2 (give
    #: up), as counts of retransmissions of one segment; R2 is settable per
    #: connection (MUST-21). ``user_timeout`` bounds R2 in seconds as well.
    r1_retries: int = 3
    r2_retries: int = 15
    user_timeout: float | None = None
    #: SYN retransmissions and the connect deadline; R2 for a SYN must allow
    #: at least 3 minutes of retries (MUST-23).
    syn_retries: int = 7
    connect_timeout: float = 180.0
    #: Maximum segment lifetime; TIME-WAIT lasts 2*MSL (MUST-13).
    msl: float = 60.0
    #: After close() (not shutdown_write), give up on a peer that never sends
    #: its FIN: FIN-WAIT-2 ends after this long (an orphan timeout, as BSD has).
    fin_wait_2_timeout: float = 60.0
    #: Keep-alives (RFC 1122 §4.2.3.6, RFC 9293 §3.8.4): off by default
    #: (MUST-25), idle interval configurable (MUST-27), default >= 2 h (MUST-28).
    keepalive: bool = False
    keepalive_idle: float = 7200.0
    keepalive_interval: float = 75.0
    keepalive_count: int = 9
    #: RFC 5961 §7: challenge ACKs per second, per connection.
    challenge_ack_limit: int = 10
    #: The initial congestion window: "rfc3390" (RFC 5681 §3.1 equation (1),
    #: 2-4 segments by SMSS) or "rfc6928" (10 segments, at most 14600 octets,
    #: as Linux does). RFC 3390 is the default: it is what RFC 5681 (and so
    #: RFC 9293 MUST-19) standardizes, RFC 6928 is Experimental, and 4
    #: segments are kinder to the slow, shallow-buffered paths the simulator
    #: models; "rfc6928" saves round trips on short transfers over fast paths.
    initial_window: str = "rfc3390"
    #: Loss detection with SACK agreed: "rack" (RACK-TLP, RFC 8985: lost
    #: retransmissions and tail losses found without a timeout, with PRR,
    #: RFC 6937, for the reduction and D-SACK undo, RFC 3708: Linux's
    #: choices) or "rfc6675" (DupThresh, RFC 6675 IsLost and its rescue
    #: retransmission, cwnd = ssthresh at once). Without SACK, NewReno's
    #: duplicate ACKs (RFC 6582). D-SACKs (RFC 2883) are sent either way.
    loss_detection: str = "rack"
    #: Congestion control: "newreno" (RFC 5681 with RFC 6582) or "cubic"
    #: (RFC 9438, Linux's default). NewReno is the default: it is what RFC
    #: 9293 MUST-19 names, the simulator's benches and the Mathis bound are
    #: its model, and on the paths this project runs (tens of ms, tens of
    #: Mbit/s) CUBIC sits in its Reno-friendly region anyway; choose
    #: "cubic" for long fat paths, where its cubic growth refills a large
    #: window in far fewer RTTs and its 0.7 reduction gives up less.
    congestion_control: str = "newreno"
    #: HyStart++ (RFC 9406) in the first slow start: leave it when the RTT
    #: shows the bottleneck queue filling (Conservative Slow Start, then
    #: congestion avoidance), not at the burst of losses an overflowing
    #: drop-tail queue gives. On by default, as Linux's HyStart is (RFC 9406
    #: is Experimental; it changes nothing on a path whose RTT does not rise).
    hystart: bool = True
    #: The window shift we offer (see rcv_wscale), worked out once here: every
    #: connection made with this configuration reads it.
    _wscale_offer: int = field(default=0, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not MIN_MSS <= self.mss <= 65495:
            raise LocalProtocolError(f"mss {self.mss} out of range {MIN_MSS}..65495")
        if self.congestion_control not in ("newreno", "cubic"):
            raise LocalProtocolError(
                f"congestion_control must be 'newreno' or 'cubic', not {self.congestion_control!r}"
            )
        if self.loss_detection not in ("rack", "rfc6675"):
            raise LocalProtocolError(
                f"loss_detection must be 'rack' or 'rfc6675', not {self.loss_detection!r}"
            )
        if self.initial_window not in INITIAL_WINDOWS:
            raise LocalProtocolError(
                f"initial_window must be one of {', '.join(INITIAL_WINDOWS)}, "
                f"not {self.initial_window!r}"
            )
        if not 1 <= self.min_peer_mss <= 536:
            raise LocalProtocolError(f"min_peer_mss {self.min_peer_mss} out of range 1..536")
        if self.send_buffer < 1 or self.receive_buffer < 1:
            raise LocalProtocolError("buffer sizes must be positive")
        if self.receive_buffer > (65535 << 14):
            raise LocalProtocolError("receive_buffer exceeds the largest scaled window")
        if not self.window_scale and self.receive_buffer > 65535:
            raise LocalProtocolError("receive_buffer > 65535 needs window_scale")
        if not 0 < self.delayed_ack_timeout < 0.5:
            raise LocalProtocolError("delayed_ack_timeout must be in (0, 0.5) s (RFC 9293 MUST-40)")
        if not 0 < self.min_rto <= self.max_rto or self.initial_rto <= 0:
            raise LocalProtocolError("need 0 < min_rto <= max_rto and initial_rto > 0")
        if not 0 < self.r1_retries < self.r2_retries:
            raise LocalProtocolError("need 0 < r1_retries < r2_retries")
        if self.syn_retries < 0 or self.connect_timeout <= 0:
            raise LocalProtocolError("syn_retries >= 0 and connect_timeout > 0 required")
        if self.user_timeout is not None and self.user_timeout <= 0:
            raise LocalProtocolError("user_timeout must be positive")
        if self.msl < 0 or self.fin_wait_2_timeout <= 0:
            raise LocalProtocolError("msl >= 0 and fin_wait_2_timeout > 0 required")
        if self.keepalive_idle <= 0 or self.keepalive_interval <= 0 or self.keepalive_count < 1:
            raise LocalProtocolError("keepalive idle/interval must be > 0 and count >= 1")
        if self.challenge_ack_limit < 1:
            raise LocalProtocolError("challenge_ack_limit must be >= 1")
        object.__setattr__(self, "_wscale_offer", self._offer_shift())  # (frozen)

    @property
    def rcv_wscale(self) -> int:
        """The shift we offer: the smallest that fits the receive buffer in 16 bits."""
        return self._wscale_offer

    def _offer_shift(self) -> int:
        if not self.window_scale:
            return 0
        shift = 0
        while (self.receive_buffer >> shift) > 65535 and shift < 14:
            shift += 1
        return shift

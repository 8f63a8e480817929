"""The counters and estimates of one TCP connection (:class:`TcpStats`).

Layer: tcp. Imports nothing (the standard library only).
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["TcpStats"]


@dataclass(slots=True)
class TcpStats:
    """Counters and estimates of one connection (a snapshot when read via ``stats``)."""

    segments_in: int = 0
    segments_out: int = 0
    bytes_in: int = 0  # payload octets accepted in order
    bytes_out: int = 0  # payload octets sent, retransmissions included
    retransmissions: int = 0  # segments resent (timeouts, fast retransmit, go-back-N)
    fast_retransmits: int = 0
    timeouts: int = 0  # retransmission timer expirations
    dupacks_in: int = 0
    challenge_acks: int = 0
    window_probes: int = 0
    keepalive_probes: int = 0
    rsts_out: int = 0
    srtt: float | None = None
    rttvar: float | None = None
    rto: float = 0.0
    cwnd: int = 0
    ssthresh: int = 0
    snd_wnd: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    loss_probes: int = 0  # RACK-TLP tail loss probes sent (RFC 8985 §7)
    rack_lost: int = 0  # ACKs or timer expiries on which RACK found losses (RFC 8985 §6)
    dsacks_in: int = 0  # D-SACKs received (RFC 2883)
    undos: int = 0  # reductions undone as spurious (RFC 3708 via D-SACK)
    hystart_exits: int = 0  # first slow starts ended by HyStart++ (RFC 9406), not a loss

    def copy(self) -> TcpStats:
        return TcpStats(
            self.segments_in,
            self.segments_out,
            self.bytes_in,
            self.bytes_out,
            self.retransmissions,
            self.fast_retransmits,
            self.timeouts,
            self.dupacks_in,
            self.challenge_acks,
            self.window_probes,
            self.keepalive_probes,
            self.rsts_out,
            self.srtt,
            self.rttvar,
            self.rto,
            self.cwnd,
            self.ssthresh,
            self.snd_wnd,
            dict(self.dropped),
            self.loss_probes,
            self.rack_lost,
            self.dsacks_in,
            self.undos,
            self.hystart_exits,
        )

"""The virtio-net header (``struct virtio_net_hdr``, virtio 1.x §5.1.6) before each frame.

A TAP device opened with IFF_VNET_HDR prefixes every frame, both ways, with
these 10 octets (the legacy layout, without ``num_buffers``): flags, GSO type,
header length, GSO segment size, checksum start and checksum offset, in the
host's byte order (little-endian on the machines synack runs on). They are how
checksum offload and TCP segmentation offload (TSO) are asked for and
reported: ``F_NEEDS_CSUM`` means the checksum field at ``csum_start +
csum_offset`` holds only the pseudo-header sum and the sum from ``csum_start``
to the end is still to be added; ``F_DATA_VALID`` means the kernel vouches for
the checksum.

Layer: wire. Imports the rest of synack.wire.
"""

from __future__ import annotations

import struct

from synack.wire import ethernet, tcp

HEADER_LEN = 10
FLAGS_AT = 0
F_NEEDS_CSUM = 1
F_DATA_VALID = 2
GSO_NONE = 0
GSO_TCPV4 = 1

NO_OFFLOAD = bytes(HEADER_LEN)  # nothing asked: the frame is complete

# flags, gso_type, hdr_len, gso_size, csum_start, csum_offset
_HDR = struct.Struct("<BBHHHH")


def needs_csum(csum_start: int, csum_offset: int) -> bytes:
    """A header asking for the checksum at ``csum_start + csum_offset`` to be completed."""
    return _HDR.pack(F_NEEDS_CSUM, GSO_NONE, 0, 0, csum_start, csum_offset)


def tso_tcpv4(tcp_start: int, tcp_header_len: int, mtu: int) -> bytes:
    """A header for an over-MTU Ethernet/IPv4/TCP frame to be cut into MTU-sized segments.

    ``tcp_start`` is where the TCP header starts in the frame (Ethernet header
    plus IPv4 header), so each segment carries ``mtu`` minus both headers of
    payload; the TCP checksum field holds the pseudo-header sum only, as for
    :func:`needs_csum`.
    """
    ip_header_len = tcp_start - ethernet.HEADER_LEN
    return _HDR.pack(
        F_NEEDS_CSUM,
        GSO_TCPV4,
        tcp_start + tcp_header_len,
        mtu - ip_header_len - tcp_header_len,
        tcp_start,
        tcp.CHECKSUM_AT,
    )


def checksum_vouched(header: bytes) -> bool:
    """Whether the kernel made or checked the frame's transport checksum (partial, or valid)."""
    return bool(header[FLAGS_AT] & (F_NEEDS_CSUM | F_DATA_VALID))

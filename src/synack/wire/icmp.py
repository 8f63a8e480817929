"""ICMP for IPv4 (RFC 792). CONTRACT: representation below; parse/build by the wire work."""

from __future__ import annotations

from dataclasses import dataclass

TYPE_ECHO_REPLY = 0
TYPE_DEST_UNREACHABLE = 3
TYPE_ECHO_REQUEST = 8
TYPE_TIME_EXCEEDED = 11

CODE_PORT_UNREACHABLE = 3
CODE_FRAG_NEEDED = 4


@dataclass(frozen=True, slots=True)
class IcmpMessage:
    """``rest`` is the 4-byte "rest of header" as an int (echo: ident<<16|seq;
    frag-needed: next-hop MTU in the low 16 bits). ``payload`` follows it: echo
    data, or for errors the quoted IP header + 8 octets."""

    type: int
    code: int
    rest: int = 0
    payload: bytes = b""

    @property
    def ident(self) -> int:
        return (self.rest >> 16) & 0xFFFF

    @property
    def sequence(self) -> int:
        return self.rest & 0xFFFF


def echo(type_: int, ident: int, sequence: int, data: bytes) -> IcmpMessage:
    return IcmpMessage(type_, 0, ((ident & 0xFFFF) << 16) | (sequence & 0xFFFF), data)


def parse(data: bytes | memoryview, *, verify_checksum: bool = True) -> IcmpMessage:
    raise NotImplementedError


def build(message: IcmpMessage) -> bytes:
    raise NotImplementedError

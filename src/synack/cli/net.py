"""``synack net``: the network basics the lessons teach, on real addresses.

- ``subnet A B --mask M``: the lesson's method. Write both addresses and the
  mask in binary, AND each address with the mask, compare the network parts.
- ``classify IP``: what kind of address it is (RFC 1918 private, loopback,
  link-local, multicast, ...) and what that means for a program using it.
- ``info``: this machine's interfaces with MAC, IPv4 addresses and masks,
  read from the kernel over rtnetlink (the same query ``ip addr`` makes) with
  only the standard library; MAC, MTU and state come from /sys/class/net.

Built on the standard ``ipaddress`` module.

Layer: cli. May import every other package; nothing imports it.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import struct
from dataclasses import asdict, dataclass, field
from ipaddress import AddressValueError, IPv4Address, IPv4Interface, IPv4Network, NetmaskValueError

from synack.errors import UsageError

# --- subnet ---------------------------------------------------------------------


def dotted_binary(value: int) -> str:
    """``192`` ... -> ``11000000.10101000.00000001.00001010``."""
    bits = f"{value:032b}"
    return ".".join(bits[i : i + 8] for i in range(0, 32, 8))


def parse_address(text: str) -> tuple[IPv4Address, int | None]:
    """``"10.0.0.1"`` or ``"10.0.0.1/24"`` -> (address, prefix or None); UsageError otherwise."""
    text = text.strip()
    try:
        if "/" in text:
            iface = IPv4Interface(text)
            return iface.ip, iface.network.prefixlen
        return IPv4Address(text), None
    except (AddressValueError, NetmaskValueError, ValueError) as exc:
        raise UsageError(f"not an IPv4 address: {text!r} ({exc})") from None


def parse_mask(text: str) -> int:
    """``255.255.255.0``, ``/24`` or ``24`` -> prefix length 24; UsageError for a non-contiguous mask."""
    text = text.strip()
    body = text[1:] if text.startswith("/") else text
    if body.isdigit():
        prefix = int(body)
        if not 0 <= prefix <= 32:
            raise UsageError(f"prefix length must be 0..32, got {prefix}")
        return prefix
    try:
        mask = int(IPv4Address(body))
    except AddressValueError:
        raise UsageError(f"not a mask: {text!r} (use 255.255.255.0, /24 or 24)") from None
    inverted = ~mask & 0xFFFFFFFF
    # A mask is ones then zeros: its complement plus one is a power of two.
    if inverted & (inverted + 1):
        raise UsageError(f"mask {text} is not contiguous ones followed by zeros")
    return 32 - inverted.bit_length()


@dataclass(frozen=True, slots=True)
class SubnetVerdict:
    a: IPv4Address
    b: IPv4Address
    prefix: int
    same: bool
    network_a: IPv4Network
    network_b: IPv4Network
    first_difference: int | None  # bit index (0 = leftmost) where the network parts differ


def compare(a: IPv4Address, b: IPv4Address, prefix: int) -> SubnetVerdict:
    net_a = IPv4Network((int(a), prefix), strict=False)
    net_b = IPv4Network((int(b), prefix), strict=False)
    diff = int(net_a.network_address) ^ int(net_b.network_address)
    first = None if diff == 0 else 32 - diff.bit_length()
    return SubnetVerdict(a, b, prefix, diff == 0, net_a, net_b, first)


def _subnet(args: argparse.Namespace) -> int:
    a, prefix_a = parse_address(args.a)
    b, prefix_b = parse_address(args.b)
    prefixes = {p for p in (prefix_a, prefix_b) if p is not None}
    if args.mask is not None:
        prefix = parse_mask(args.mask)
        if prefixes - {prefix}:
            raise UsageError("the /N on an address disagrees with --mask")
    elif len(prefixes) == 1:
        prefix = prefixes.pop()
    elif len(prefixes) > 1:
        raise UsageError("the two addresses carry different /N prefixes; give one --mask")
    else:
        raise UsageError(
            "give the mask: --mask 255.255.255.0 (or /24), or write an address as A.B.C.D/N"
        )
    v = compare(a, b, prefix)
    mask = int(v.network_a.netmask)
    if args.json:
        print(
            json.dumps(
                {
                    "a": str(a),
                    "b": str(b),
                    "mask": str(v.network_a.netmask),
                    "prefix": prefix,
                    "network_a": str(v.network_a),
                    "network_b": str(v.network_b),
                    "same_subnet": v.same,
                }
            )
        )
        return 0
    rows = [
        ("address A", int(a)),
        ("address B", int(b)),
        (f"mask /{prefix}", mask),
        ("A AND mask", int(v.network_a.network_address)),
        ("B AND mask", int(v.network_b.network_address)),
    ]
    for label, value in rows:
        print(f"{label:<11} {IPv4Address(value)!s:<16} {dotted_binary(value)}")
    # A marker under the binary column: network bits '^', host bits ' '.
    marker = "".join("n" if i < prefix else "h" for i in range(32))
    print(
        f"{'':<11} {'':<16} {'.'.join(marker[i : i + 8] for i in range(0, 32, 8))}   (n = network bit, h = host bit)"
    )
    print()
    if v.same:
        print(
            f"same subnet: {v.network_a}. The first {prefix} bits (the network part) are equal, "
            "so the two hosts reach each other directly on the link (ARP, no router)."
        )
        for name, addr in (("A", a), ("B", b)):
            note = _special_in_subnet(addr, v.network_a)
            if note:
                print(f"note: {name} ({addr}) is {note}")
    else:
        assert v.first_difference is not None
        print(
            f"different subnets: {v.network_a} and {v.network_b}. The network parts differ at bit "
            f"{v.first_difference + 1} of {prefix}, so traffic between them goes through a router."
        )
    return 0


def _special_in_subnet(addr: IPv4Address, net: IPv4Network) -> str:
    if net.prefixlen >= 31:
        return ""  # RFC 3021: /31 and /32 have no network or broadcast address
    if addr == net.network_address:
        return "the network address of the subnet (all host bits 0), not a host"
    if addr == net.broadcast_address:
        return "the subnet's broadcast address (all host bits 1), not a host"
    return ""


# --- classify -------------------------------------------------------------------

# (network, label, explanation); first match wins, most specific first.
_CLASSES: tuple[tuple[IPv4Network, str, str], ...] = tuple(
    (IPv4Network(net), label, text)
    for net, label, text in (
        (
            "0.0.0.0/32",
            "unspecified",
            "0.0.0.0 is 'no address': binding a server to it (INADDR_ANY) listens on every local "
            "address at once; it is never a destination",
        ),
        (
            "255.255.255.255/32",
            "broadcast",
            "limited broadcast: every host on this link; routers never forward it",
        ),
        (
            "0.0.0.0/8",
            "this-network",
            "'this network' (RFC 1122): only valid as a source while booting",
        ),
        (
            "127.0.0.0/8",
            "loopback",
            "loopback (RFC 1122): never leaves this machine; 127.0.0.1 is 'localhost'",
        ),
        (
            "10.0.0.0/8",
            "private",
            "private (RFC 1918, block 10.0.0.0/8): not routed on the Internet; NAT needed",
        ),
        (
            "172.16.0.0/12",
            "private",
            "private (RFC 1918, block 172.16.0.0/12): not routed on the Internet; NAT needed",
        ),
        (
            "192.168.0.0/16",
            "private",
            "private (RFC 1918, block 192.168.0.0/16): not routed on the Internet; NAT needed",
        ),
        (
            "100.64.0.0/10",
            "shared",
            "shared address space (RFC 6598): carrier-grade NAT between ISP and customer",
        ),
        (
            "169.254.0.0/16",
            "link-local",
            "link-local (RFC 3927): self-assigned when no DHCP answers; valid on one link only",
        ),
        ("192.0.0.0/24", "ietf", "IETF protocol assignments (RFC 6890)"),
        (
            "192.0.2.0/24",
            "documentation",
            "documentation (RFC 5737, TEST-NET-1): for examples, never in use",
        ),
        (
            "198.51.100.0/24",
            "documentation",
            "documentation (RFC 5737, TEST-NET-2): for examples, never in use",
        ),
        (
            "203.0.113.0/24",
            "documentation",
            "documentation (RFC 5737, TEST-NET-3): for examples, never in use",
        ),
        ("198.18.0.0/15", "benchmarking", "benchmarking (RFC 2544): for network device tests"),
        (
            "224.0.0.0/24",
            "multicast",
            "multicast, local network control block (RFC 5771): one link only, e.g. 224.0.0.1 all hosts",
        ),
        (
            "224.0.0.0/4",
            "multicast",
            "multicast (RFC 5771): one sender, every host that joined the group",
        ),
        ("240.0.0.0/4", "reserved", "reserved for future use (RFC 1112): not usable"),
    )
)


@dataclass(frozen=True, slots=True)
class Classification:
    address: IPv4Address
    kind: str  # unspecified, broadcast, loopback, private, link-local, multicast, public, ...
    explanation: str
    block: IPv4Network | None = None
    subnet_note: str = ""


def classify(addr: IPv4Address, prefix: int | None = None) -> Classification:
    note = ""
    if prefix is not None:
        net = IPv4Network((int(addr), prefix), strict=False)
        special = _special_in_subnet(addr, net)
        note = (
            f"in subnet {net}: {special}"
            if special
            else f"in subnet {net}: host {int(addr) - int(net.network_address)} of {max(net.num_addresses - 2, 1)}"
        )
        if special.startswith("the subnet's broadcast"):
            note += " (a directed broadcast)"
    for net_, label, text in _CLASSES:
        if addr in net_:
            return Classification(addr, label, text, net_, note)
    return Classification(
        addr, "public", "public (globally routable): reachable across the Internet", None, note
    )


def _classify(args: argparse.Namespace) -> int:
    results = [classify(*parse_address(text)) for text in args.addresses]
    if args.json:
        for r in results:
            print(
                json.dumps(
                    {
                        "address": str(r.address),
                        "kind": r.kind,
                        "block": str(r.block) if r.block else None,
                        "explanation": r.explanation,
                        "subnet": r.subnet_note or None,
                    }
                )
            )
        return 0
    for r in results:
        print(f"{r.address}: {r.kind}")
        print(f"  {r.explanation}")
        if r.subnet_note:
            print(f"  {r.subnet_note}")
    return 0


# --- info -----------------------------------------------------------------------

_NETLINK_ROUTE = 0
_RTM_NEWADDR = 20
_RTM_GETADDR = 22
_NLM_F_REQUEST = 0x1
_NLM_F_DUMP = 0x300
_NLMSG_ERROR = 2
_NLMSG_DONE = 3
_IFA_ADDRESS = 1
_IFA_LOCAL = 2
_IFA_LABEL = 3
_NLMSG = struct.Struct("=IHHII")
_IFADDRMSG = struct.Struct("=BBBBI")
_RTATTR = struct.Struct("=HH")


@dataclass(slots=True)
class Interface:
    name: str
    index: int
    mac: str | None = None
    mtu: int | None = None
    state: str | None = None
    loopback: bool = False
    addresses: list[str] = field(default_factory=list)  # "A.B.C.D/N"


def _align4(n: int) -> int:
    return (n + 3) & ~3


def netlink_ipv4_addresses(timeout: float = 2.0) -> list[tuple[int, str, IPv4Interface]]:
    """(ifindex, label, address/prefix) for every IPv4 address, via an rtnetlink RTM_GETADDR dump."""
    out: list[tuple[int, str, IPv4Interface]] = []
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, _NETLINK_ROUTE) as sock:
        sock.settimeout(timeout)
        sock.bind((0, 0))
        body = _IFADDRMSG.pack(socket.AF_INET, 0, 0, 0, 0)
        sock.send(
            _NLMSG.pack(_NLMSG.size + len(body), _RTM_GETADDR, _NLM_F_REQUEST | _NLM_F_DUMP, 1, 0)
            + body
        )
        for _ in range(10_000):  # bounded: a dump ends with NLMSG_DONE long before this
            buf = sock.recv(1 << 16)
            off = 0
            while off + _NLMSG.size <= len(buf):
                length, mtype, _flags, _seq, _pid = _NLMSG.unpack_from(buf, off)
                if length < _NLMSG.size or off + length > len(buf):
                    raise OSError("malformed netlink reply")
                if mtype == _NLMSG_DONE:
                    return out
                if mtype == _NLMSG_ERROR:
                    (err,) = struct.unpack_from("=i", buf, off + _NLMSG.size)
                    raise OSError(-err, os.strerror(-err))
                if mtype == _RTM_NEWADDR:
                    family, prefix, _f, _scope, index = _IFADDRMSG.unpack_from(
                        buf, off + _NLMSG.size
                    )
                    attrs: dict[int, bytes] = {}
                    a = off + _NLMSG.size + _IFADDRMSG.size
                    while a + _RTATTR.size <= off + length:
                        rta_len, rta_type = _RTATTR.unpack_from(buf, a)
                        if rta_len < _RTATTR.size:
                            break
                        attrs[rta_type] = buf[a + _RTATTR.size : a + rta_len]
                        a += _align4(rta_len)
                    # IFA_LOCAL is this host's address; IFA_ADDRESS is the peer on point-to-point links.
                    raw = attrs.get(_IFA_LOCAL) or attrs.get(_IFA_ADDRESS)
                    if family == socket.AF_INET and raw is not None and len(raw) == 4:
                        label = attrs.get(_IFA_LABEL, b"").rstrip(b"\0").decode(errors="replace")
                        out.append((index, label, IPv4Interface((IPv4Address(raw), prefix))))
                off += _align4(length)
    return out


def _sysfs(name: str, item: str) -> str | None:
    try:
        with open(f"/sys/class/net/{name}/{item}") as f:
            return f.read().strip()
    except OSError:
        return None


def interfaces() -> list[Interface]:
    """This machine's interfaces with MAC, MTU, state and IPv4 addresses (standard library only)."""
    result = {index: Interface(name, index) for index, name in socket.if_nameindex()}
    for iface in result.values():
        iface.mac = _sysfs(iface.name, "address") or None  # TUN and other L3 devices have none
        mtu = _sysfs(iface.name, "mtu")
        iface.mtu = int(mtu) if mtu and mtu.isdigit() else None
        iface.state = _sysfs(iface.name, "operstate")
        flags = _sysfs(iface.name, "flags")
        iface.loopback = bool(flags and int(flags, 16) & 0x8)  # IFF_LOOPBACK
    try:
        addresses = netlink_ipv4_addresses()
    except OSError:
        addresses = []  # no rtnetlink (not Linux, or denied): names and MACs only
    for index, _label, addr in addresses:
        if index in result:
            result[index].addresses.append(str(addr))
    return sorted(result.values(), key=lambda i: i.index)


def _info(args: argparse.Namespace) -> int:
    found = interfaces()
    if args.json:
        for iface in found:
            print(json.dumps(asdict(iface)))
        return 0
    for iface in found:
        extra = " (loopback)" if iface.loopback else ""
        print(
            f"{iface.index}: {iface.name}{extra}  state {iface.state or '?'}  mtu {iface.mtu or '?'}"
        )
        print(f"    mac   {iface.mac or '-'}")
        if not iface.addresses:
            print("    inet  (no IPv4 address)")
        for text in iface.addresses:
            addr = IPv4Interface(text)
            net = addr.network
            bcast = f"  broadcast {net.broadcast_address}" if net.prefixlen < 31 else ""
            print(
                f"    inet  {addr.ip}/{net.prefixlen}  mask {net.netmask}  network {net.network_address}{bcast}"
            )
    return 0


# --- command line ---------------------------------------------------------------


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    net = subparsers.add_parser(
        "net",
        help="network basics: subnets, address kinds, this machine's interfaces",
        description="Network basics on real addresses (built on the ipaddress module).",
    )
    sub = net.add_subparsers(dest="net_command", metavar="SUBCOMMAND", required=True)

    p = sub.add_parser(
        "subnet",
        help="are two addresses in the same subnet? (shows the binary AND)",
        description="Show both addresses and the mask in dotted and binary form, AND each address "
        "with the mask, and say whether the network parts are equal.",
    )
    p.add_argument("a", metavar="IP", help="first address (A.B.C.D or A.B.C.D/N)")
    p.add_argument("b", metavar="IP", help="second address (A.B.C.D or A.B.C.D/N)")
    p.add_argument("--mask", "-m", help="subnet mask: 255.255.255.0, /24 or 24")
    p.add_argument("--json", action="store_true", help="one JSON object instead of the explanation")
    p.set_defaults(func=_subnet)

    p = sub.add_parser(
        "classify",
        help="what kind of address is this? (private, loopback, multicast, ...)",
        description="Classify IPv4 addresses: unspecified, loopback, private (which RFC 1918 block), "
        "link-local, multicast, broadcast, public, ... With A.B.C.D/N also its place in that subnet.",
    )
    p.add_argument("addresses", metavar="IP", nargs="+", help="A.B.C.D or A.B.C.D/N")
    p.add_argument("--json", action="store_true", help="one JSON object per address")
    p.set_defaults(func=_classify)

    p = sub.add_parser(
        "info",
        help="this machine's interfaces: MAC, IPv4 addresses and masks",
        description="List network interfaces with MAC address, state, MTU, IPv4 addresses and masks.",
    )
    p.add_argument("--json", action="store_true", help="one JSON object per interface")
    p.set_defaults(func=_info)

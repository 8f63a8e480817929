"""``synack net``: subnet arithmetic, address classification, interface listing."""

from __future__ import annotations

import json
import shutil
import subprocess
from ipaddress import IPv4Address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from synack.cli.main import main
from synack.cli.net import classify, compare, dotted_binary, interfaces, parse_mask


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(["net", *argv])
    out, err = capsys.readouterr()
    return status, out, err


def test_subnet_different(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(
        capsys, "subnet", "192.168.1.10", "192.168.2.20", "--mask", "255.255.255.0"
    )
    assert status == 0
    assert "address A   192.168.1.10     11000000.10101000.00000001.00001010" in out
    assert "mask /24    255.255.255.0    11111111.11111111.11111111.00000000" in out
    assert "A AND mask  192.168.1.0      11000000.10101000.00000001.00000000" in out
    assert "B AND mask  192.168.2.0      11000000.10101000.00000010.00000000" in out
    assert "different subnets: 192.168.1.0/24 and 192.168.2.0/24" in out
    assert "bit 23 of 24" in out


@pytest.mark.parametrize(
    "argv",
    [
        ("192.168.1.10", "192.168.1.20", "--mask", "255.255.255.0"),
        ("192.168.1.10", "192.168.1.20", "--mask", "/24"),
        ("192.168.1.10", "192.168.1.20", "--mask", "24"),
        ("192.168.1.10/24", "192.168.1.20"),
        ("192.168.1.10/24", "192.168.1.20/24"),
    ],
)
def test_subnet_same_in_every_spelling(
    capsys: pytest.CaptureFixture[str], argv: tuple[str, ...]
) -> None:
    status, out, _ = run(capsys, "subnet", *argv)
    assert status == 0
    assert "same subnet: 192.168.1.0/24" in out


def test_subnet_mask_changes_the_answer(capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = run(capsys, "subnet", "10.0.1.5", "10.0.2.5", "--mask", "/16", "--json")
    assert json.loads(out)["same_subnet"] is True
    _, out, _ = run(capsys, "subnet", "10.0.1.5", "10.0.2.5", "--mask", "/24", "--json")
    got = json.loads(out)
    assert (
        got["same_subnet"] is False
        and got["network_b"] == "10.0.2.0/24"
        and got["mask"] == "255.255.255.0"
    )


def test_subnet_notes_network_and_broadcast(capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = run(capsys, "subnet", "192.168.1.0", "192.168.1.255", "--mask", "24")
    assert "A (192.168.1.0) is the network address" in out
    assert "B (192.168.1.255) is the subnet's broadcast address" in out


@pytest.mark.parametrize(
    "argv",
    [
        ("subnet", "192.168.1.300", "192.168.1.1", "--mask", "24"),
        ("subnet", "192.168.1.1", "192.168.1.2"),
        ("subnet", "192.168.1.1", "192.168.1.2", "--mask", "255.0.255.0"),
        ("subnet", "192.168.1.1", "192.168.1.2", "--mask", "33"),
        ("subnet", "192.168.1.1", "192.168.1.2", "--mask", "banana"),
        ("subnet", "192.168.1.1/24", "192.168.1.2/16"),
        ("subnet", "192.168.1.1/24", "192.168.1.2", "--mask", "16"),
        ("subnet", "::1", "192.168.1.2", "--mask", "16"),
        ("classify", "example.com"),
    ],
)
def test_user_mistakes_exit_2(capsys: pytest.CaptureFixture[str], argv: tuple[str, ...]) -> None:
    status, out, err = run(capsys, *argv)
    assert status == 2 and out == ""
    assert err.startswith("synack: error: ") and err.count("\n") == 1


def test_help_and_bare_group(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["net", "subnet", "--help"])
    assert info.value.code == 0
    assert "--mask" in capsys.readouterr().out
    with pytest.raises(SystemExit) as bare:
        main(["net"])
    assert bare.value.code == 2


def test_parse_mask() -> None:
    assert [
        parse_mask(m)
        for m in ("255.255.255.0", "/24", "24", "0.0.0.0", "255.255.255.255", "255.255.240.0")
    ] == [
        24,
        24,
        24,
        0,
        32,
        20,
    ]


@settings(max_examples=300)
@given(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1), st.integers(0, 32))
def test_compare_is_the_bitwise_and(a: int, b: int, prefix: int) -> None:
    mask = (0xFFFFFFFF << (32 - prefix)) & 0xFFFFFFFF
    v = compare(IPv4Address(a), IPv4Address(b), prefix)
    assert v.same == ((a & mask) == (b & mask))
    assert int(v.network_a.network_address) == a & mask
    if not v.same:
        assert v.first_difference is not None
        bit = 31 - v.first_difference
        assert (a >> bit) & 1 != (b >> bit) & 1
        assert (a & mask) >> (bit + 1) == (b & mask) >> (bit + 1)
    assert dotted_binary(a).replace(".", "") == format(a, "032b")


@pytest.mark.parametrize(
    ("address", "kind", "words"),
    [
        ("0.0.0.0", "unspecified", "INADDR_ANY"),
        ("127.0.0.1", "loopback", "localhost"),
        ("127.9.9.9", "loopback", ""),
        ("10.1.2.3", "private", "10.0.0.0/8"),
        ("172.16.0.1", "private", "172.16.0.0/12"),
        ("172.31.255.254", "private", "172.16.0.0/12"),
        ("172.32.0.1", "public", ""),
        ("192.168.0.1", "private", "192.168.0.0/16"),
        ("169.254.10.20", "link-local", "RFC 3927"),
        ("224.0.0.251", "multicast", "local network control"),
        ("239.1.2.3", "multicast", ""),
        ("255.255.255.255", "broadcast", ""),
        ("100.64.0.1", "shared", "RFC 6598"),
        ("192.0.2.5", "documentation", "TEST-NET-1"),
        ("8.8.8.8", "public", ""),
        ("240.0.0.1", "reserved", ""),
    ],
)
def test_classify_table(
    capsys: pytest.CaptureFixture[str], address: str, kind: str, words: str
) -> None:
    status, out, _ = run(capsys, "classify", address)
    assert status == 0
    assert out.splitlines()[0] == f"{address}: {kind}"
    assert words in out


def test_classify_with_prefix(capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = run(capsys, "classify", "10.1.2.255/24", "10.1.2.7/24", "--json")
    first, second = (json.loads(line) for line in out.splitlines())
    assert first["kind"] == "private" and "directed broadcast" in first["subnet"]
    assert second["subnet"] == "in subnet 10.1.2.0/24: host 7 of 254"


@settings(max_examples=500)
@given(st.integers(0, 2**32 - 1))
def test_classify_agrees_with_ipaddress(value: int) -> None:
    addr = IPv4Address(value)
    kind = classify(addr).kind
    assert (kind == "loopback") == addr.is_loopback
    assert (kind == "multicast") == addr.is_multicast
    assert (kind == "link-local") == addr.is_link_local
    if kind == "public":
        assert addr.is_global
    if kind in ("private", "documentation", "loopback", "link-local"):
        assert addr.is_private


def _ip_snapshot() -> tuple[set[tuple[str, str]], dict[str, str | None]]:
    theirs = json.loads(
        subprocess.run(["ip", "-j", "addr"], capture_output=True, text=True, check=True).stdout
    )
    addresses = {
        (link["ifname"], f"{a['local']}/{a['prefixlen']}")
        for link in theirs
        for a in link.get("addr_info", [])
        if a.get("family") == "inet"
    }
    return addresses, {link["ifname"]: link.get("address") for link in theirs}


@pytest.mark.skipif(shutil.which("ip") is None, reason="iproute2 (ip) is not installed")
def test_info_matches_ip_addr(capsys: pytest.CaptureFixture[str]) -> None:
    # Other tests may add or remove TAP devices meanwhile: compare against an
    # `ip addr` view that did not change while ours was taken.
    for _ in range(10):
        before = _ip_snapshot()
        ours = interfaces()
        if _ip_snapshot() == before:
            break
    expected, macs = before
    assert {(i.name, a) for i in ours for a in i.addresses} == expected
    for iface in ours:
        assert iface.mac == (macs.get(iface.name) or None)
    assert any(i.loopback and "127.0.0.1/8" in i.addresses for i in ours)
    status, out, _ = run(capsys, "info")
    assert status == 0
    assert "inet  127.0.0.1/8  mask 255.0.0.0  network 127.0.0.0" in out
    status, out, _ = run(capsys, "info", "--json")
    assert "lo" in {json.loads(line)["name"] for line in out.splitlines()}

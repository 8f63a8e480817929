"""`synack udpchat` end to end: real processes, real UDP, a lossy relay."""

from __future__ import annotations

import json
import os
import random
import select
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.apps.time.serverproc import LISTENING, synack_cmd


def start_peer(*args: str) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        synack_cmd("udpchat", "--port", "0", "--json", *args),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )
    assert proc.stderr is not None
    line = proc.stderr.readline()
    m = LISTENING.search(line)
    if not m:
        proc.kill()
        raise AssertionError(f"peer did not start: {line!r} {proc.stderr.read()}")
    return proc, int(m.group(2))


def finish(
    proc: subprocess.Popen[str], lines: list[str] | None = None
) -> tuple[list[dict[str, object]], str]:
    out, err = proc.communicate("".join(f"{x}\n" for x in lines or []), timeout=60)
    assert proc.returncode == 0, err
    return [json.loads(x) for x in out.splitlines()], err


class LossyRelay:
    """Sits between two peers: each sees the relay as the other. Seeded loss both ways."""

    def __init__(self, seed: int, loss: float) -> None:
        self.rng = random.Random(seed)
        self.loss = loss
        self.for_a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # what A calls B
        self.for_b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # what B calls A
        for s in (self.for_a, self.for_b):
            s.bind(("127.0.0.1", 0))
        self.a_addr: tuple[str, int] | None = None
        self.b_addr: tuple[str, int] | None = None
        self.forwarded = self.dropped = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def port_for_a(self) -> int:
        return int(self.for_a.getsockname()[1])

    def port_for_b(self) -> int:
        return int(self.for_b.getsockname()[1])

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        deadline = time.monotonic() + 120  # bounded, whatever happens
        while not self._stop.is_set() and time.monotonic() < deadline:
            ready, _, _ = select.select([self.for_a, self.for_b], [], [], 0.05)
            for s in ready:
                data, _src = s.recvfrom(65535)
                if s is self.for_a:
                    out, dst = self.for_b, self.b_addr
                else:
                    out, dst = self.for_a, self.a_addr
                if dst is None:
                    continue
                if self.rng.random() < self.loss:
                    self.dropped += 1
                    continue
                out.sendto(data, dst)
                self.forwarded += 1

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.for_a.close()
        self.for_b.close()


def test_two_peers_exchange_and_contact_names(tmp_path: Path) -> None:
    book = tmp_path / "contacts.toml"
    bob, bob_port = start_peer("--name", "bob")
    try:
        book.write_text(f'[contacts]\nbob = "127.0.0.1:{bob_port}"\n')
        alice, alice_port = start_peer("--name", "alice", "--contacts", str(book))
        a_events, _ = finish(
            alice,
            [
                "/contacts",
                "/to bob",
                "hello bob",
                "/to bob direct \u00e9t\u00e9",
                "/quit",
                "ignored",
            ],
        )
    finally:
        b_events, _b_err = finish(bob)
    msgs = [e for e in b_events if e["type"] == "msg"]
    # Alice's address is not in bob's book: shown under the name she gives.
    assert [(m["from"], m["text"]) for m in msgs] == [
        ("alice", "hello bob"),
        ("alice", "direct \u00e9t\u00e9"),
    ]
    assert all(m["addr"] == f"127.0.0.1:{alice_port}" for m in msgs)
    assert a_events[0] == {"type": "contacts", "contacts": {"bob": f"127.0.0.1:{bob_port}"}}
    delivered = [e for e in a_events if e["type"] == "delivered"]
    assert sorted(e["id"] for e in delivered) == sorted(m["id"] for m in msgs)
    assert all(e["to"] == "bob" for e in delivered)


def test_lossy_relay_every_message_once_or_undelivered() -> None:
    n = 25
    relay = LossyRelay(seed=1234, loss=0.3)
    bob, bob_port = start_peer(
        "--name", "bob", "--contact", f"alice=127.0.0.1:{relay.port_for_b()}"
    )
    alice, alice_port = start_peer(
        "--name",
        "alice",
        "--contact",
        f"bob=127.0.0.1:{relay.port_for_a()}",
        "--timeout",
        "0.05",
        "--tries",
        "5",
    )
    relay.a_addr = ("127.0.0.1", alice_port)
    relay.b_addr = ("127.0.0.1", bob_port)
    relay.start()
    try:
        # One contact in the book: it is selected without /to.
        a_events, _ = finish(alice, [f"message {i}" for i in range(n)])
    finally:
        b_events, _ = finish(bob)
        relay.close()
    outcomes = [e for e in a_events if e["type"] in ("delivered", "undelivered")]
    ids = [e["id"] for e in outcomes]
    assert len(ids) == n and len(set(ids)) == n, "each message has exactly one outcome"
    shown = [e for e in b_events if e["type"] == "msg"]
    keys = [(e["from"], e["id"]) for e in shown]
    assert len(keys) == len(set(keys)), "a message was shown twice"
    assert all(e["from"] == "alice" for e in shown)  # named by bob's book
    assert {e["text"] for e in shown} <= {f"message {i}" for i in range(n)}
    shown_ids = {e["id"] for e in shown}
    assert shown_ids <= set(ids)
    for e in outcomes:
        if e["type"] == "delivered":
            assert e["id"] in shown_ids and e["to"] == "bob"
    # The relay really lost datagrams, and most messages still got through.
    assert relay.dropped > 0
    assert sum(e["type"] == "delivered" for e in outcomes) >= n // 2


def test_oversized_message_is_a_clear_error_and_peer_goes_on() -> None:
    bob, bob_port = start_peer("--name", "bob")
    try:
        alice, _ = start_peer("--name", "alice", "--contact", f"bob=127.0.0.1:{bob_port}")
        _a_events, a_err = finish(alice, ["x" * 2000, "small"])
    finally:
        b_events, _ = finish(bob)
    assert "message too long" in a_err and "limit 1200" in a_err
    assert [e["text"] for e in b_events if e["type"] == "msg"] == ["small"]


def test_oversized_and_garbage_datagrams_are_dropped() -> None:
    bob, bob_port = start_peer("--name", "bob")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        big = json.dumps({"type": "msg", "id": 1, "from": "m", "text": "y" * 1300}).encode()
        s.sendto(big, ("127.0.0.1", bob_port))
        s.sendto(b"\x00garbage", ("127.0.0.1", bob_port))
        s.sendto(b'{"type":"msg","id":2,"from":"m","text":"ok"}', ("127.0.0.1", bob_port))
        s.settimeout(5)
        ack = json.loads(s.recv(2048))  # only the valid message is acknowledged
    b_events, b_err = finish(bob)
    assert ack == {"type": "ack", "id": 2}
    assert "dropped 1 oversized and 1 malformed datagram(s)" in b_err
    assert [(e["from"], e["text"]) for e in b_events if e["type"] == "msg"] == [("m", "ok")]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--name", "a", "--contacts", "/nonexistent/c.toml"], "no such contacts file"),
        (["--name", "a", "--contact", "bob"], "NAME=HOST:PORT"),
        (["--name", "a", "--contact", "bob=127.0.0.1:99999"], "PORT"),
        (["--name", "a", "--port", "70000"], "bad port"),
        (["--name", "", "--port", "0"], "--name"),
    ],
)
def test_user_mistakes_exit_2_one_line(args: list[str], needle: str) -> None:
    proc = subprocess.run(
        synack_cmd("udpchat", *args), input="", capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 2
    assert needle in proc.stderr and proc.stderr.strip().count("\n") == 0, proc.stderr


def test_bad_toml_and_port_in_use(tmp_path: Path) -> None:
    bad = tmp_path / "c.toml"
    bad.write_text("[contacts\n")
    proc = subprocess.run(
        synack_cmd("udpchat", "--name", "a", "--contacts", str(bad)),
        input="",
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2 and "not valid TOML" in proc.stderr
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        proc = subprocess.run(
            synack_cmd("udpchat", "--name", "a", "--port", str(s.getsockname()[1])),
            input="",
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert proc.returncode == 2 and "address already in use" in proc.stderr


@pytest.mark.parametrize(
    ("content", "needle"),
    [(b'[contacts]\nbob = "127.0.0.1:1\xff"\n', "not UTF-8"), (None, "is a directory")],
)
def test_unreadable_contacts_file_is_a_usage_error(
    tmp_path: Path, content: bytes | None, needle: str
) -> None:
    from synack.apps.udpchat.contacts import load_contacts
    from synack.errors import UsageError

    path = tmp_path / "c.toml"
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content)
    with pytest.raises(UsageError, match=needle):
        load_contacts(str(path), [])

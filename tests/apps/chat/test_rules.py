"""Every rule and error code of docs/protocol.md §2, checked on the sans-IO room.

Time is a manual clock (``Room.advance``): the heartbeat, idle-timeout and
rate-limit tests use the real defaults (30 s, 90 s, 50/s with a burst of 200)
and take milliseconds.
"""

from __future__ import annotations

import json

import pytest

from synack.apps.chat import ChatConfig
from synack.apps.chat.core import ChatRoom, ClientState, Disconnect
from synack.errors import LocalProtocolError

from .helpers import WALL, Room


def registered(*nicks: str, config: ChatConfig | None = None) -> Room:
    """A room where each nick has connected and registered (and all inboxes are empty)."""
    r = Room(config)
    for nick in nicks:
        r.hello(nick)
    for nick in nicks:
        r.take(nick)
    return r


# -- registration ----------------------------------------------------------------------


def test_welcome_lists_everyone_and_unknown_members_are_ignored() -> None:
    r = registered("ada")
    r.connect("bob")
    r.send("bob", type="hello", nick="bob", colour="blue", version=[1, 2])
    assert r.take("bob") == [{"type": "welcome", "nick": "bob", "users": ["ada", "bob"]}]
    assert r.take("ada") == [{"type": "joined", "nick": "bob"}]
    assert r.room.nicks == ["ada", "bob"]


@pytest.mark.parametrize("nick", ["", "x" * 33, "a b", "tab\t", "dot.ted", "émoji🙂"])
def test_bad_nick(nick: str) -> None:
    r = Room()
    r.connect("p")
    r.send("p", type="hello", nick=nick)
    (err,) = r.take("p")
    assert (err["type"], err["code"]) == ("error", "bad-nick") and err["detail"]
    assert r.hello("p", "fine")["users"] == ["fine"]  # the connection stays open


@pytest.mark.parametrize("nick", ["a", "x" * 32, "Zoë", "李雷", "r2-d2_", "٣"])
def test_good_nick(nick: str) -> None:
    assert Room().hello("p", nick)["nick"] == nick


def test_nick_taken_and_free_again_after_leaving() -> None:
    r = registered("ada")
    r.connect("other")
    r.send("other", type="hello", nick="ada")
    assert [m.get("code") for m in r.take("other")] == ["nick-taken"]
    r.send("other", type="hello", nick="ada2")
    assert r.types("other") == ["welcome"]
    assert r.take("ada") == [{"type": "joined", "nick": "ada2"}]
    r.send("ada", type="hello", nick="ada3")  # a second hello is refused
    assert [m.get("code") for m in r.take("ada")] == ["bad-message"]
    r.send("ada", type="bye")
    assert r.types("ada") == ["bye"]
    assert r.gone["ada"].reason == "bye" and not r.gone["ada"].abort
    assert r.take("other") == [{"type": "left", "nick": "ada", "reason": "bye"}]
    assert r.hello("third", "ada")["users"] == ["ada2", "ada"]


def test_registration_race_in_one_turn() -> None:
    # Two connections ask for the same nick in the same event-loop turn: the first frame
    # handled wins, the second hears nick-taken and may pick another nick in that turn.
    r = registered("obs")
    r.connect("p")
    r.connect("q")
    with r.turn():
        r.send("p", type="hello", nick="ada")
        r.send("q", type="hello", nick="ada")
        r.send("q", type="hello", nick="bob")
    assert r.take("p") == [
        {"type": "welcome", "nick": "ada", "users": ["obs", "ada"]},
        {"type": "joined", "nick": "bob"},
    ]
    got_q = r.take("q")
    assert [m["type"] for m in got_q] == ["error", "welcome"]
    assert got_q[0]["code"] == "nick-taken"
    assert got_q[1]["users"] == ["obs", "ada", "bob"]
    # Everyone registered before hears each join, the newcomer hears the later ones only.
    assert r.take("obs") == [{"type": "joined", "nick": "ada"}, {"type": "joined", "nick": "bob"}]
    assert r.room.nicks == ["obs", "ada", "bob"]


def test_not_registered() -> None:
    r = Room()
    r.connect("p")
    for t in ({"type": "say", "text": "x"}, {"type": "who"}):
        r.send("p", **t)
        assert [m.get("code") for m in r.take("p")] == ["not-registered"]
    r.send("p", type="ping")  # allowed before hello
    assert r.types("p") == ["pong"]
    r.send("p", type="pong")
    assert r.take("p") == []
    r.hello("p", "late")


def test_a_newcomer_sees_nothing_from_before_its_welcome() -> None:
    r = registered("ada")
    with r.turn():
        r.send("ada", type="say", text="before bob")
        r.connect("bob")
        r.send("bob", type="hello", nick="bob")
        r.send("ada", type="say", text="after bob")
    assert [m.get("text") or m["nick"] for m in r.take("bob")] == ["bob", "after bob"]
    assert [m.get("text") or m["nick"] for m in r.take("ada")] == [
        "before bob",
        "bob",
        "after bob",
    ]


def test_max_clients_counts_every_connection_and_frees_on_close() -> None:
    r = registered("a", "b", config=ChatConfig(max_clients=3))
    r.connect("lurker")  # never registers: still a connection
    assert r.connect("extra") is False
    assert r.take("extra") == [
        {"type": "error", "code": "server-full", "detail": "too many clients"}
    ]
    assert r.gone["extra"].reason == "server-full" and not r.gone["extra"].abort
    assert r.room.stats["server-full"] == 1 and len(r.room) == 3
    r.send("lurker", type="bye")  # closing counts until the close itself
    assert r.connect("again") is True


def test_stop_tells_everyone_bye_and_refuses_newcomers() -> None:
    r = registered("ada", "bob")
    r.connect("lurker")
    r.room.stop()
    r.advance(0)
    r._end()
    for key in ("ada", "bob", "lurker"):
        assert r.types(key) == ["bye"]  # no `left`: everyone is leaving at once
        assert r.gone[key].reason == "bye"
    assert len(r.room) == 0 and r.room.nicks == []
    assert r.connect("late") is False
    assert [m["code"] for m in r.take("late")] == ["server-full"]


def test_already_connected_key_is_a_local_error() -> None:
    r = Room()
    r.connect("p")
    with pytest.raises(LocalProtocolError):
        r.room.connect("p", 0.0)


# -- messages --------------------------------------------------------------------------


def test_broadcast_direct_and_note_to_self() -> None:
    r = registered("ada", "bob", "cleo")
    r.now = 12.5
    r.send("ada", type="say", text="hi all")
    msgs = [r.take(p) for p in ("ada", "bob", "cleo")]
    assert msgs[0] == msgs[1] == msgs[2]  # to everyone, the sender included
    (m,) = msgs[0]
    assert m == {
        "type": "msg",
        "id": 1,
        "from": "ada",
        "text": "hi all",
        "ts": WALL + 12.5,
        "to": None,
    }

    r.send("bob", type="say", text="psst", to="cleo")
    for p in ("bob", "cleo"):
        assert r.take(p) == [
            {"type": "msg", "id": 2, "from": "bob", "text": "psst", "ts": WALL + 12.5, "to": "cleo"}
        ]
    assert r.take("ada") == []  # a direct message goes to its two ends only
    r.send("cleo", type="say", text="note to self", to="cleo")
    assert [m["text"] for m in r.take("cleo")] == ["note to self"]  # once, not twice
    r.send("ada", type="who")
    assert r.take("ada") == [{"type": "users", "users": ["ada", "bob", "cleo"]}]
    assert r.room.stats["messages"] == 3


def test_forged_members_are_ignored() -> None:
    # A client cannot choose its message's sender, id or timestamp.
    r = registered("ada", "bob")
    r.send("ada", type="say", text="hi", **{"from": "bob", "id": 999, "ts": 0.0})
    assert r.take("ada") == r.take("bob")
    r.send("ada", type="say", text="hi", **{"from": "bob", "id": 999, "ts": 0.0})
    (m,) = r.take("bob")
    assert (m["from"], m["id"], m["ts"]) == ("ada", 2, WALL)
    r.take("ada")
    r.send("ada", type="hello", nick="ada", users=["x"])  # a second hello with extras
    assert [m["code"] for m in r.take("ada")][-1] == "bad-message"


@pytest.mark.parametrize(
    "payload",
    [
        b"not json",
        b"\xff\xfe",
        b"[1, 2]",
        b'"hello"',
        b"{}",
        b'{"type": "dance"}',
        b'{"type": 7}',
        b'{"type": "say", "text": 5}',
        b'{"type": "say"}',
        b'{"type": "say", "text": "x", "to": 3}',
        b'{"type": "hello", "nick": null}',
        b"",
    ],
)
def test_bad_message_keeps_the_connection(payload: bytes) -> None:
    r = registered("ada")
    r.raw("ada", payload)
    (err,) = r.take("ada")
    assert (err["type"], err["code"]) == ("error", "bad-message") and err["detail"]
    r.send("ada", type="say", text="still here")
    assert [m["text"] for m in r.take("ada")] == ["still here"]


@pytest.mark.parametrize("text", ["", "x" * 4097])
def test_bad_text(text: str) -> None:
    r = registered("ada", "bob")
    r.send("ada", type="say", text=text)
    assert [m["code"] for m in r.take("ada")] == ["bad-text"]
    r.send("ada", type="say", text="x" * 4096)  # the limit itself is fine
    (m,) = r.take("bob")
    assert len(m["text"]) == 4096


@pytest.mark.parametrize("member", ["nick", "text"])
def test_lone_surrogate_is_refused(member: str) -> None:
    r = registered("ada")
    msg = {"type": "hello" if member == "nick" else "say", member: "a\ud800b"}
    r.send("ada", **msg)  # json.dumps writes the escape \ud800: not valid Unicode text
    (err,) = r.take("ada")
    assert err["code"] in ("bad-message", "bad-nick", "bad-text")
    r.send("ada", type="say", text="ok")
    assert [m["text"] for m in r.take("ada")] == ["ok"]


def test_no_such_user() -> None:
    r = registered("ada")
    r.send("ada", type="say", text="hello?", to="nobody")
    assert [m["code"] for m in r.take("ada")] == ["no-such-user"]


def test_frames_after_bye_are_ignored() -> None:
    r = registered("ada", "bob")
    r.raw("ada", *(json.dumps(m).encode() for m in ({"type": "bye"}, {"type": "say", "text": "x"})))
    assert r.types("ada") == ["bye"]
    assert r.take("bob") == [{"type": "left", "nick": "ada", "reason": "bye"}]
    assert r.room.stats["messages"] == 0


def test_direct_and_broadcast_interleaved_keep_both_orders() -> None:
    r = registered("ada", "bob", "cleo", config=ChatConfig(rate=0))
    plan = [(f"m{i}", "bob" if i % 3 == 0 else None) for i in range(60)]
    # One read of many frames: handled in one turn, merged into one write per client.
    r.raw("ada", *(json.dumps({"type": "say", "text": t, "to": to}).encode() for t, to in plan))
    expect_bob = [t for t, _ in plan]
    expect_cleo = [t for t, to in plan if to is None]
    for p, want in (("ada", expect_bob), ("bob", expect_bob), ("cleo", expect_cleo)):
        msgs = r.take(p)
        assert [m["text"] for m in msgs] == want  # the sender's order
        ids = [m["id"] for m in msgs]
        assert ids == sorted(ids)  # increasing id order
        assert all(m["to"] == ("bob" if int(m["text"][1:]) % 3 == 0 else None) for m in msgs)


# -- who, and user lists that outgrow a frame --------------------------------------------


def test_who_lists_me_first_then_registration_order_and_counts_the_rest() -> None:
    limit = 20_000
    # U+20000, a CJK ideograph: 4 bytes of UTF-8 and NFKC-stable (math-bold
    # letters, used here before, now register as plain ASCII: issue 14).
    nicks = [f"{i:03d}" + "\U00020000" * 29 for i in range(250)]  # 119 bytes, 122 listed
    r = Room(ChatConfig(max_send_frame=limit))
    for n in nicks:
        r.hello(n)
    me = nicks[200]
    r.take(me)
    r.send(me, type="who")
    (users,) = r.take(me)
    listed = users["users"]
    assert listed[0] == me
    others = [n for n in nicks if n != me]
    assert listed[1:] == others[: len(listed) - 1]  # the first registered who fit
    assert users["more"] == len(nicks) - len(listed) > 0
    size = len(json.dumps(users, separators=(",", ":"), ensure_ascii=False).encode())
    # As many as fit: one more nick would not (the budget keeps ten digits for `more`).
    assert limit - 122 - 10 < size <= limit
    # When someone leaves the list shrinks; when it fits, `more` is not sent at all.
    for n in nicks[10:]:
        r.lost(n)
    r.send(nicks[0], type="who")
    assert r.take(nicks[0])[-1] == {"type": "users", "users": nicks[:10]}


def test_user_lists_never_exceed_the_clients_max_frame() -> None:
    # Nicks of 32 four-byte letters: 160 of them are a 21 KB list. A client accepts frames up to
    # its max_frame (§1, 65,536 by default), so a room bigger than a frame must not lock every
    # newcomer out: `welcome` and `users` list who fits (the newcomer first) and count the rest.
    limit = 20_000
    # CJK ideographs from U+20000: four bytes each and NFKC-stable (math-bold
    # letters, used here before, now register as plain ASCII: issue 14).
    nicks = [chr(0x20000 + i % 26) * 31 + chr(0x2001A + i // 26) for i in range(160)]
    r = Room(ChatConfig(max_send_frame=limit))
    welcomes = [r.hello(n) for n in nicks]
    last = welcomes[-1]
    assert last["users"][0] == nicks[-1]
    assert len(last["users"]) + last["more"] == len(nicks)
    assert last["more"] > 0
    assert "more" not in welcomes[0]  # a list that fits is whole, as before
    r.send(nicks[0], type="who")
    listed = r.take(nicks[0])[-1]
    assert listed["users"][0] == nicks[0] and listed["more"] > 0
    assert len(set(listed["users"])) + listed["more"] == len(nicks)
    assert max(r.frame_sizes) <= limit  # every frame the room sent, joins included


# -- the rate limit ----------------------------------------------------------------------


def test_rate_limit_refuses_the_burst_plus_first_and_refills_with_time() -> None:
    r = registered("ada", "bob")  # the defaults: 50 a second, a burst of 200
    says = [json.dumps({"type": "say", "text": f"m{i}"}).encode() for i in range(201)]
    r.raw("ada", *says)
    got = r.take("ada")
    assert [m["text"] for m in got[:200]] == [f"m{i}" for i in range(200)]
    assert got[200]["code"] == "rate-limited" and len(got) == 201
    assert len(r.take("bob")) == 200  # the refused message went nowhere
    r.advance(0.019)  # 0.95 of a token
    r.send("ada", type="say", text="too soon")
    assert [m.get("code") for m in r.take("ada")] == ["rate-limited"]
    r.advance(0.001)
    r.send("ada", type="say", text="one more")
    assert [m.get("text") for m in r.take("ada")] == ["one more"]
    r.advance(1.0)  # 50 tokens
    r.raw("ada", *says[:51])
    assert [m["type"] for m in r.take("ada")] == ["msg"] * 50 + ["error"]
    r.advance(10)  # 500 tokens' worth of time, but never more than the burst saved up
    r.raw("ada", *says)
    assert [m["type"] for m in r.take("ada")].count("msg") == 200
    assert r.room.stats["rate-limited"] == 4


def test_rate_limit_counts_say_and_who_only() -> None:
    r = registered("ada", config=ChatConfig(rate=1, burst=2))
    r.send("ada", type="who")
    r.send("ada", type="say", text="x")
    r.send("ada", type="who")
    assert [m.get("code") for m in r.take("ada")] == [None, None, "rate-limited"]
    for t in ("ping", "pong", "ping"):
        r.send("ada", type=t)
    r.send("ada", type="hello", nick="ada")  # refused as a second hello, not as too fast
    assert [m.get("code", m["type"]) for m in r.take("ada")] == ["pong", "pong", "bad-message"]


def test_rate_limited_drops_only_the_excess() -> None:
    r = registered("ada", "bob", config=ChatConfig(rate=0.01, burst=3))
    r.raw("ada", *(json.dumps({"type": "say", "text": f"m{i}"}).encode() for i in range(5)))
    got = r.take("ada")
    assert [m.get("text", m.get("code")) for m in got] == [
        "m0",
        "m1",
        "m2",
        "rate-limited",
        "rate-limited",
    ]
    assert [m["text"] for m in r.take("bob")] == ["m0", "m1", "m2"]
    assert r.room.stats["rate-limited"] == 2


def test_rate_zero_means_no_limit() -> None:
    r = registered("ada", config=ChatConfig(rate=0))
    r.raw("ada", *[json.dumps({"type": "say", "text": "x"}).encode()] * 5000)
    assert r.types("ada") == ["msg"] * 5000


def test_a_flood_costs_only_the_flooder() -> None:
    r = registered("flood", "bob")
    junk = [b"\x00" * 100, b"{}", json.dumps({"type": "say", "text": "x"}).encode()] * 3000
    r.raw("flood", *junk)
    got = r.take("flood")
    assert len(got) == len(junk)  # every frame answered, none dropped unannounced
    assert sum(m["type"] == "msg" for m in got) == 200
    assert len(r.take("bob")) == 200
    r.send("bob", type="say", text="unaffected")
    assert [m["text"] for m in r.take("bob")] == ["unaffected"]


# -- heartbeats and idle timeouts --------------------------------------------------------


def test_heartbeat_after_the_interval_then_timeout_for_a_silent_client() -> None:
    r = registered("quiet", "obs")  # the defaults: ping after 30 s of silence, close at 90 s
    assert r.room.get_timer() == 30.0
    r.advance(29.999)
    assert r.take("quiet") == []
    r.advance(0.001)
    assert r.take_timed("quiet") == [(30.0, {"type": "ping"})]
    r.send("obs", type="pong")  # obs answers: it lives on
    r.advance(30)  # another ping 30 s after the unanswered one
    assert r.take_timed("quiet") == [(60.0, {"type": "ping"})]
    r.advance(29.999)
    assert "quiet" not in r.gone
    r.advance(0.001)
    got = r.take_timed("quiet")
    assert got == [
        (90.0, {"type": "error", "code": "timeout", "detail": "nothing received for 90 s"})
    ]
    assert r.gone["quiet"] == Disconnect("quiet", "timeout", data=r.gone["quiet"].data)
    left = [m for m in r.take("obs") if m["type"] == "left"]
    assert left == [{"type": "left", "nick": "quiet", "reason": "timeout"}]
    assert r.room.nicks == ["obs"] and r.room.stats["timeout"] == 1


def test_answering_pings_keeps_a_client_online() -> None:
    r = registered("live")
    for _ in range(20):  # 20 heartbeats, ten minutes
        r.advance(30)
        assert r.types("live") == ["ping"]
        r.advance(0.005)
        r.send("live", type="pong")
    assert "live" not in r.gone and r.room.stats["timeout"] == 0
    # The next ping is due 30 s after the last frame received.
    assert r.room.get_timer() == pytest.approx(r.now + 30)


def test_any_frame_counts_as_life() -> None:
    r = registered("ada", "bob")
    r.advance(20)
    r.send("ada", type="who")
    r.take("ada")
    assert r.room.get_timer() == 30.0  # bob's ping; ada's moved to 50
    r.advance(10)
    assert r.types("bob") == ["ping"] and r.take("ada") == []
    r.advance(20)
    assert r.types("ada") == ["ping"]


def test_heartbeat_and_idle_timeout_among_others() -> None:
    r = registered("live", "quiet", "obs", config=ChatConfig(heartbeat=0.15, idle_timeout=0.6))
    for _ in range(100):  # one second in 10 ms steps
        r.advance(0.01)
        r.send("obs", type="ping")  # obs keeps talking
        if any(m["type"] == "ping" for m in r.take("live")):
            r.send("live", type="pong")  # live answers the heartbeat
    seen = r.take("quiet")
    # Pings at 0.15, 0.3 and 0.45 s; at 0.6 s the idle timeout comes first.
    assert [m["type"] for m in seen] == ["ping"] * 3 + ["error"]
    assert seen[-1]["code"] == "timeout" and seen[-1]["detail"]
    left = [m for m in r.take("obs") if m["type"] == "left"]
    assert left == [{"type": "left", "nick": "quiet", "reason": "timeout"}]
    assert r.room.nicks == ["live", "obs"]  # answering pings kept `live` online
    assert r.room.stats["timeout"] == 1


def test_unregistered_idle_connection_is_closed() -> None:
    r = Room(ChatConfig(heartbeat=0.1, idle_timeout=0.3))
    r.connect("p")
    r.advance(1)
    seen = r.take_timed("p")
    assert [(t, m["type"]) for t, m in seen] == [(0.1, "ping"), (0.2, "ping"), (0.3, "error")]
    assert seen[-1][1]["code"] == "timeout" and r.gone["p"].reason == "timeout"
    assert r.room.get_timer() is None


def test_idle_timeout_shorter_than_the_heartbeat_closes_without_a_ping() -> None:
    r = registered("ada", config=ChatConfig(heartbeat=30, idle_timeout=10))
    r.advance(60)
    assert [(t, m["type"]) for t, m in r.take_timed("ada")] == [(10.0, "error")]


def test_one_deadline_for_many_clients() -> None:
    # Unregistered clients: the hello deadline (10 s by default) is moved past
    # the first heartbeat so that the heartbeat is what this test watches.
    r = Room(ChatConfig(hello_timeout=60.0))
    for i in range(1000):
        r.now = i / 1000
        r.connect(f"u{i}")
    r.now = 1.0
    assert r.room.get_timer() == 30.0  # the first one's, however many there are
    r.advance(28.999)
    assert sum(len(r.take(f"u{i}")) for i in range(1000)) == 0
    r.advance(1.0)
    assert all(r.types(f"u{i}")[-1] == "ping" for i in range(1000))


# -- slow readers ------------------------------------------------------------------------


def test_a_paused_reader_gets_its_backlog_in_order_on_resume() -> None:
    r = registered("talker", "slow", "obs")
    r.room.pause("slow")
    for i in range(5):
        r.send("talker", type="say", text=f"m{i}")
    r.send("obs", type="say", text="dm", to="slow")
    assert r.take("slow") == []  # held back...
    assert [m["text"] for m in r.take("obs")] == ["m0", "m1", "m2", "m3", "m4", "dm"]
    backlog = r.room.resume("slow")  # ...and handed over in order
    r._deliver("slow", backlog)
    assert [m["text"] for m in r.take("slow")] == ["m0", "m1", "m2", "m3", "m4", "dm"]
    assert r.room.resume("slow") == b""
    r.send("talker", type="say", text="live again")
    assert [m["text"] for m in r.take("slow")] == ["live again"]


def test_a_reader_too_slow_for_its_queue_is_dropped_and_nobody_waits() -> None:
    r = registered("talker", "slow", "obs", config=ChatConfig(rate=0, max_queue=64 * 1024))
    r.room.pause("slow")
    text = "y" * 4000
    sent = 0
    while "slow" not in r.gone:
        r.send("talker", type="say", text=text)
        sent += 1
        assert sent < 100
    frame = 4 + len(json.dumps(r.take("talker")[0], separators=(",", ":")))
    assert sent == 64 * 1024 // frame + 1  # the first frame past the bound
    assert r.gone["slow"] == Disconnect("slow", "too-slow", abort=True)
    assert r.take("slow") == []  # nothing is written to it, nothing after the abort
    obs = r.take("obs")
    assert [m["id"] for m in obs if m["type"] == "msg"] == list(range(1, sent + 1))
    assert obs[-1] == {"type": "left", "nick": "slow", "reason": "too-slow"}
    assert r.room.nicks == ["talker", "obs"] and r.room.stats["too-slow"] == 1
    r.room.connection_lost("slow")  # the abort's echo changes nothing
    assert r.room.stats["too-slow"] == 1 and r.take("obs") == []


def test_last_words_reach_a_paused_reader() -> None:
    r = registered("ada", "bob")
    r.room.pause("ada")
    r.send("bob", type="say", text="queued")
    r.send("ada", type="bye")
    assert r.types("ada") == ["msg", "bye"]
    assert r.gone["ada"].reason == "bye" and not r.gone["ada"].abort


# -- the connection's end ----------------------------------------------------------------


def test_frame_too_large_truncated_and_lost_are_announced() -> None:
    r = registered("big", "cut", "gone", "obs")
    r.room.frame_too_large("big", "frame of 4294967295 bytes over the limit")
    r._end()
    assert r.take("big") == [
        {
            "type": "error",
            "code": "frame-too-large",
            "detail": "frame of 4294967295 bytes over the limit",
        }
    ]
    assert not r.gone["big"].abort
    r.room.truncated("cut", "stream ended inside a frame")
    r._end()
    assert r.gone["cut"] == Disconnect("cut", "disconnected", abort=True)
    r.lost("gone")
    assert "gone" not in r.gone  # nothing left to close
    assert [(m["nick"], m["reason"]) for m in r.take("obs")] == [
        ("big", "error"),
        ("cut", "disconnected"),
        ("gone", "disconnected"),
    ]
    assert r.room.state("obs") is ClientState.REGISTERED
    assert r.room.state("gone") is ClientState.CLOSED


def test_an_internal_error_costs_one_client(monkeypatch: pytest.MonkeyPatch) -> None:
    r = registered("ada", "bob")
    original = ChatRoom._say

    def broken(self: ChatRoom[str], c: object, text: str, to: str | None, wall: float) -> None:
        if text == "boom":
            raise RuntimeError("a bug")
        original(self, c, text, to, wall)  # type: ignore[arg-type]

    monkeypatch.setattr(ChatRoom, "_say", broken)
    r.send("ada", type="say", text="boom")
    assert r.gone["ada"] == Disconnect("ada", "error", abort=True)
    assert r.take("bob") == [{"type": "left", "nick": "ada", "reason": "error"}]
    r.send("bob", type="say", text="fine")
    assert [m["text"] for m in r.take("bob")] == ["fine"]
    assert r.room.stats["internal-error"] == 1


def test_an_abort_carries_no_data() -> None:
    with pytest.raises(LocalProtocolError):
        Disconnect("x", "error", abort=True, data=b"x")

"""TCP Fast Open (RFC 7413), sans-IO: the server's cookies, the client's cache, one open's state.

A client that holds a cookie from a server sends data on its SYN; the server
checks the cookie against the client's address and, when it is good, gives
the data to the application at once and acknowledges it in its SYN-ACK: a
request and its answer save a round trip. Without a cookie the client asks
for one (an empty option) on an ordinary SYN.

- :class:`FastOpenCookies` (server, §4.1.2): a cookie is a MAC of the client's
  IPv4 address. RFC 7413 asks for a message authentication code tag that
  authenticates the client's address, that only the server can make, that is
  fast next to SYN processing and that expires; its AES-128 construction is
  offered as an example ("a simple implementation"), not required. AES is not
  in Python's standard library, so the MAC here is keyed BLAKE2s (RFC 7693
  §2.9: keyed BLAKE2 is a MAC/PRF) truncated to 64 bits, as long as the
  RFC's example cookie and Linux's; a forger must guess 64 bits per address.
  Cookies expire: the key of each ``lifetime`` period is derived from the
  secret and the period number, and the current and previous periods' cookies
  are accepted (a cookie lives one to two periods). ``rekey`` replaces the
  secret and keeps the old one valid for a period, as Linux's primary and
  backup keys do.
- :class:`FastOpenCache` (client, §4.1.3 and §4.1.3.1): per server address, the
  cookie and the server's MSS, and negative results (a SYN-ACK that did not
  acknowledge our data without a new cookie, a lost SYN with data, a connect
  timeout) that stop Fast Open to that server for ``negative_time``; bounded,
  oldest first out.
- :class:`FastOpen`: what one connection does about Fast Open; the host builds
  it and hands it to :meth:`~synack.tcp.connection.TcpConnection.connect` or
  ``accept_syn`` and reads the outcome from it once the handshake is over.

Layer: tcp. Imports synack.errors and synack.wire.
"""

from __future__ import annotations

import hashlib
import hmac
from ipaddress import IPv4Address

from synack.errors import LocalProtocolError
from synack.wire.tcp import FASTOPEN_COOKIE_MAX, FASTOPEN_COOKIE_MIN, MAX_OPTIONS_LEN, TcpSegment

__all__ = ["COOKIE_LEN", "FastOpen", "FastOpenCache", "FastOpenCookies", "syn_data_room"]

#: 64 bits: RFC 7413 §4.1.2's example length (Linux's too).
COOKIE_LEN = 8


def _checked_secret(secret: bytes) -> bytes:
    if not 16 <= len(secret) <= 64:
        raise LocalProtocolError("the Fast Open secret must be 16 to 64 bytes")
    return secret


class FastOpenCookies:
    """The server's cookie maker and checker (RFC 7413 §4.1.2), keyed by a secret."""

    __slots__ = ("_keys", "_previous", "_secret", "lifetime")

    def __init__(self, secret: bytes, *, lifetime: float = 3600.0) -> None:
        self._secret = _checked_secret(secret)
        if lifetime <= 0:
            raise LocalProtocolError("the cookie lifetime must be positive")
        self.lifetime = lifetime
        self._previous: bytes | None = None
        self._keys: dict[tuple[bytes, int], bytes] = {}

    def rekey(self, secret: bytes) -> None:
        """A new secret; cookies made with the old one stay valid for one more period."""
        new = _checked_secret(secret)  # before anything changes
        self._previous = self._secret
        self._secret = new
        self._keys.clear()

    def _key(self, secret: bytes, period: int) -> bytes:
        key = self._keys.get((secret, period))
        if key is None:
            if len(self._keys) > 8:
                self._keys.clear()
            material = b"tcp-fastopen" + period.to_bytes(8, "big", signed=True)
            key = hashlib.blake2s(material, key=hashlib.sha256(secret).digest()).digest()
            self._keys[(secret, period)] = key
        return key

    def _mac(self, secret: bytes, period: int, client: IPv4Address) -> bytes:
        key = self._key(secret, period)
        return hashlib.blake2s(client.packed, key=key, digest_size=COOKIE_LEN).digest()

    def cookie(self, client: IPv4Address, now: float) -> bytes:
        """The cookie for ``client`` (its source address) as of ``now``."""
        return self._mac(self._secret, int(now // self.lifetime), client)

    def valid(self, client: IPv4Address, cookie: bytes, now: float) -> bool:
        """Whether ``cookie`` came from us for ``client`` in this period or the last."""
        if len(cookie) != COOKIE_LEN:
            return False
        period = int(now // self.lifetime)
        secrets = (self._secret,) if self._previous is None else (self._secret, self._previous)
        for secret in secrets:
            for p in (period, period - 1):
                # Constant time: the comparison must not tell a forger how
                # many leading octets it guessed.
                if hmac.compare_digest(self._mac(secret, p, client), cookie):
                    return True
        return False

    def answer(
        self, client: IPv4Address, syn: TcpSegment, now: float, *, room: bool = True
    ) -> tuple[FastOpen | None, str | None]:
        """The server's verdict on a SYN (RFC 7413 §4.2.2): the FastOpen for
        ``accept_syn`` and what happened, for the host's counters.

        No option: none (``None, None``). A request: a cookie in the SYN-ACK
        ("request"). A valid cookie: the data taken ("accepted"), unless
        ``room`` is False, the pending bound of §5.1 (then an ordinary
        handshake, "overflow", as Linux answers). Any other cookie: its data
        ignored, a fresh cookie in the SYN-ACK ("bad-cookie").
        """
        offered = syn.options.fastopen
        if offered is None:
            return None, None
        if not offered:
            return FastOpen(self.cookie(client, now)), "request"
        if not self.valid(client, offered, now):
            return FastOpen(self.cookie(client, now)), "bad-cookie"
        if not room:
            return None, "overflow"
        return FastOpen(None, accepted=True), "accepted"


class FastOpenCache:
    """The client's cookies and negative results per server address (RFC 7413 §4.1.3)."""

    __slots__ = ("_entries", "limit", "negative_time")

    def __init__(self, *, limit: int = 1024, negative_time: float = 300.0) -> None:
        if limit < 1 or negative_time < 0:
            raise LocalProtocolError("need limit >= 1 and negative_time >= 0")
        self.limit = limit
        self.negative_time = negative_time
        # server -> (cookie or None, its MSS or None, negative result until)
        self._entries: dict[IPv4Address, tuple[bytes | None, int | None, float]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def cookie(self, server: IPv4Address) -> bytes | None:
        entry = self._entries.get(server)
        return None if entry is None else entry[0]

    def offer(self, server: IPv4Address, now: float) -> FastOpen | None:
        """What an open to ``server`` tries: None while a negative result stands
        (§4.1.3.1), else a FastOpen with our cookie (data goes on the SYN) or a
        request for one (an empty cookie)."""
        entry = self._entries.get(server)
        if entry is None:
            return FastOpen(b"")
        cookie, mss, until = entry
        if now < until:
            return None
        return FastOpen(cookie or b"", mss=mss)

    def learn(self, server: IPv4Address, fo: FastOpen, now: float) -> None:
        """Record what one open found out (once its handshake is over, or failed)."""
        cookie, mss, _ = self._entries.pop(server, (None, None, -1.0))
        if fo.cookie_received:
            cookie, mss = fo.cookie_received, fo.peer_mss
        refused = fo.syn_data > 0 and not fo.data_acked
        negative = (
            # §4.1.3.1: no answer at all; a SYN with data lost (a middlebox
            # may drop such SYNs) or our data refused without a new cookie;
            # a request answered without a cookie: no Fast Open (now).
            fo.failed
            or (refused and (fo.syn_lost or fo.cookie_received is None))
            or (fo.synack_seen and fo.cookie == b"" and fo.cookie_received is None)
        )
        if negative:
            cookie = None
        self._entries[server] = (cookie, mss, now + self.negative_time if negative else -1.0)
        while len(self._entries) > self.limit:
            del self._entries[next(iter(self._entries))]


def syn_data_room(our_mss: int, peer_mss: int | None) -> int:
    """How much data fits a SYN: the smaller MSS (the peer's as cached, else RFC
    9293's 536) less the most option space the SYN may need (Linux does the same)."""
    mss = min(our_mss, peer_mss if peer_mss else 536)
    return max(mss - MAX_OPTIONS_LEN, 0)


class FastOpen:
    """One connection's Fast Open (RFC 7413 §4.2).

    Client: ``cookie`` is what the SYN's option carries (b"" asks for one);
    data rides on the first SYN only when it is a cookie. The connection
    fills in ``syn_data`` (octets our SYN carried), ``synack_seen``,
    ``cookie_received`` (the SYN-ACK's cookie), ``peer_mss``, ``data_acked``
    (the SYN-ACK acknowledged the data), ``syn_lost`` (the SYN was resent);
    the host sets ``failed`` when the open timed out.

    Server: ``cookie`` is what our SYN-ACK carries (None: no option, the
    answer to a valid cookie); ``accepted`` means the SYN's data was taken
    and data may be sent before the handshake completes (§4.2.2).
    """

    __slots__ = (
        "accepted",
        "cookie",
        "cookie_received",
        "data_acked",
        "failed",
        "mss",
        "peer_mss",
        "syn_data",
        "syn_lost",
        "synack_seen",
    )

    def __init__(
        self, cookie: bytes | None, *, mss: int | None = None, accepted: bool = False
    ) -> None:
        if cookie and not FASTOPEN_COOKIE_MIN <= len(cookie) <= FASTOPEN_COOKIE_MAX:
            raise LocalProtocolError("a Fast Open cookie is 4 to 16 octets (RFC 7413 §4.1.1)")
        self.cookie = cookie
        self.mss = mss  # the server's MSS as cached with the cookie (client)
        self.accepted = accepted
        self.syn_data = 0
        self.synack_seen = False
        self.cookie_received: bytes | None = None
        self.peer_mss: int | None = None
        self.data_acked = False
        self.syn_lost = False
        self.failed = False

    def syn_octets(self, queued: int, our_mss: int, resent: bool) -> int:
        """Client: how much of the ``queued`` data our SYN carries (§4.2.1): some only on
        the first SYN and with a cookie; a resent one carries none (and notes the loss)."""
        if not self.cookie:
            return 0
        if resent:
            self.syn_lost = self.syn_data > 0
            return 0
        self.syn_data = min(queued, syn_data_room(our_mss, self.mss))
        return self.syn_data

    def __repr__(self) -> str:
        return (
            f"FastOpen(cookie={self.cookie!r}, syn_data={self.syn_data}, "
            f"accepted={self.accepted}, data_acked={self.data_acked})"
        )

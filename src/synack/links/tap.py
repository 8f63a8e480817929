"""Linux TAP devices: whole Ethernet frames between synack and the kernel.

Opened through /dev/net/tun with IFF_TAP|IFF_NO_PI (so each read or write is
exactly one frame, no packet-information prefix), non-blocking, to be watched
by an event loop (``loop.add_reader(tap.fileno(), ...)``). The device's MTU is
set with the SIOCSIFMTU ioctl; a 65535 MTU lets the kernel hand us 64 KiB
segments without TSO/offloads.

A frame's payload may be a :class:`~synack.tcp.buffers.Lent` (a file's
pages a zero-copy ``sendfile`` lent the send buffer): it is written from its
``kernel_views`` (the kernel copies the pages, once, into the frame) and never
read here. The kernel's copy of a page the file no longer has fails with
EFAULT (where a read in Python would be SIGBUS): the frame is refused and
counted (``lent_refused``), and the lender told (its connection is reset).

Layer: links. Imports synack.stack (SplitFrame), synack.tcp (buffers), synack.wire and
synack.links.base.
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import fcntl
import os
import platform
import socket
import struct
from typing import cast

from synack.links.base import FrameSink
from synack.stack.host import SplitFrame
from synack.stack.offload import BIG_TSO_MAX_TOTAL, IPV4_MAX_TOTAL
from synack.tcp.buffers import LENT, Lent
from synack.wire import ethernet, ipv4, tcp, virtio
from synack.wire.checksum import fold, pseudo_header_sum

TUNSETIFF = 0x400454CA
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
SIOCSIFMTU = 0x8922
IFF_UP = 0x1
SIOCGIFTXQLEN = 0x8942
SIOCSIFTXQLEN = 0x8943
TX_QUEUE_LEN = 10_000
IFNAMSIZ = 16
ETH_HEADER = ethernet.HEADER_LEN
IFF_VNET_HDR = 0x4000
TUNSETOFFLOAD = 0x400454D0
TUNSETVNETHDRSZ = 0x400454D8
TUN_F_CSUM = 0x01
TUN_F_TSO4 = 0x02
VNET_HDR_LEN = virtio.HEADER_LEN
_NO_VNET = virtio.NO_OFFLOAD  # "no offload asked" for frames we write
_TCP_CSUM = tcp.CHECKSUM_AT
_TCP_DOFF = tcp.DATA_OFFSET_AT
# A TSO super-segment's virtio header by (TCP start, TCP header length, MSS,
# device MTU): the same few shapes frame after frame (TapDevice._tso_header).
_TSO_HEADERS: dict[tuple[int, int, int, int], bytes] = {}
_ETHERTYPE = struct.Struct("!H")
_ADDRS = struct.Struct("!II")  # IPv4 source and destination, adjacent (RFC 791 §3.1)
TAP_MAX_MTU = 65535 - ETH_HEADER


class TapDevice:
    """One open TAP device. ``read()`` returns one frame or None when none is
    waiting; ``write()`` sends one frame to the kernel.

    ``offload=True`` opens the device with IFF_VNET_HDR and tells the kernel
    (TUNSETOFFLOAD) that we take partial checksums and TCP segmentation
    offload: the kernel then hands over up to 64 KiB TCP segments at any MTU
    instead of MTU-sized ones, one read instead of dozens. Each frame is
    prefixed by a virtio_net_hdr, stripped here (see :meth:`read` for what
    becomes of the checksums).
    """

    def __init__(
        self,
        name: str,
        *,
        mtu: int = 1500,
        up: bool = True,
        offload: bool = False,
        big_tcp: bool = True,
    ) -> None:
        if not name or len(name.encode()) >= IFNAMSIZ or "/" in name or " " in name:
            raise ValueError(f"bad interface name {name!r} (1-15 characters)")
        if not 68 <= mtu <= 65535:
            raise ValueError("mtu must be between 68 and 65535")
        fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            flags = IFF_TAP | IFF_NO_PI | (IFF_VNET_HDR if offload else 0)
            ifr = struct.pack("16sH", name.encode(), flags)
            try:
                res = fcntl.ioctl(fd, TUNSETIFF, ifr)
            except OSError as exc:
                if exc.errno != errno.EBUSY:
                    raise
                raise OSError(errno.EBUSY, _busy(name)) from None
            if offload:
                fcntl.ioctl(fd, TUNSETVNETHDRSZ, struct.pack("i", VNET_HDR_LEN))
                fcntl.ioctl(fd, TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4)
            else:
                # A persistent device keeps the offloads a previous --offload
                # run asked for; left on, the kernel would hand us partial
                # checksums we cannot tell from bad ones (no virtio header).
                fcntl.ioctl(fd, TUNSETOFFLOAD, 0)
        except OSError:
            os.close(fd)
            raise
        self.fd = fd
        self.name = res[:IFNAMSIZ].rstrip(b"\0").decode()
        self.mtu = mtu
        self.offload = offload
        # The largest IPv4 packet a TSO super-segment may be (0: no offload):
        # over 65,535 where the kernel takes BIG TCP, unless ``big_tcp`` is
        # False (the way out if some kernel of that release does not).
        self.tso_max = ((big_tcp and big_tso_max()) or IPV4_MAX_TOTAL) if offload else 0
        self.frames_in = 0
        self.frames_out = 0
        self.write_errors = 0
        # Frames whose lent payload the kernel could not copy (EFAULT: the
        # file shrank under a zero-copy sendfile); counted in write_errors too.
        self.lent_refused = 0
        # The kernel caps a TAP device's MTU at 65535 minus its Ethernet
        # header (tun.c: MAX_MTU - hard_header_len): "65535" means that cap.
        self.set_mtu(min(mtu, TAP_MAX_MTU))
        # The kernel's queue towards us (tun's ring is sized by txqueuelen):
        # room for a burst of 1,000 connections opening at once, not 1,000 frames.
        try:
            if self.txqueuelen() < TX_QUEUE_LEN:
                self._ifreq(SIOCSIFTXQLEN, struct.pack("i", TX_QUEUE_LEN) + bytes(20))
        except OSError:
            pass  # not ours to change (no CAP_NET_ADMIN): keep the kernel's
        if up:
            self.set_up()

    def txqueuelen(self) -> int:
        res = self._ifreq(SIOCGIFTXQLEN, bytes(24))
        return int(struct.unpack_from("i", res, IFNAMSIZ)[0])

    def fileno(self) -> int:
        return self.fd

    def _ifreq(self, req: int, data: bytes) -> bytes:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            return fcntl.ioctl(s.fileno(), req, struct.pack("16s", self.name.encode()) + data)

    def set_mtu(self, mtu: int) -> None:
        self._ifreq(SIOCSIFMTU, struct.pack("i", mtu) + bytes(20))
        self.mtu = mtu
        # Room for a VLAN tag; with offloads a read may carry a 64 KiB
        # segment whatever the MTU.
        self._bufsize = (
            (65535 + ETH_HEADER + 4 + VNET_HDR_LEN) if self.offload else mtu + ETH_HEADER + 4
        )

    def set_up(self) -> None:
        res = self._ifreq(SIOCGIFFLAGS, bytes(24))
        (flags,) = struct.unpack_from("H", res, IFNAMSIZ)
        self._ifreq(SIOCSIFFLAGS, struct.pack("H", flags | IFF_UP) + bytes(22))

    @property
    def vouched(self) -> type[bytes] | None:
        """The type of the frames :meth:`read` gives whose TCP/UDP checksum the
        kernel vouches for (``Host.receive_frames``' ``vouched``): with
        offloads plain ``bytes``, the others then being :class:`KernelUnchecked`;
        without, None (nothing is vouched for)."""
        return bytes if self.offload else None

    def read(self) -> bytes | None:
        """One frame, or None. With offloads, a frame whose TCP/UDP checksum
        the kernel vouches for (it made the packet: partial checksum, or
        "data valid") comes back as plain bytes, its checksum field left as
        the kernel wrote it (as tcpdump shows on an offloading NIC), and a
        receiver may skip verifying it; any other as :class:`KernelUnchecked`
        (see :attr:`vouched`). The common frame is the plain one because a
        bytes subclass is made in three passes over the octets (a copy, the
        zeroed allocation, a second copy: 4.6 us for 64 KiB against 1.6 for
        a slice), on every 64 KiB segment of an offloaded upload."""
        try:
            frame = os.read(self.fd, self._bufsize)
        except BlockingIOError:
            return None
        self.frames_in += 1
        if self.offload:
            if virtio.checksum_vouched(frame):
                return frame[VNET_HDR_LEN:]
            return KernelUnchecked(memoryview(frame)[VNET_HDR_LEN:])
        return frame

    def read_batch(self, limit: int) -> list[bytes]:
        """Up to ``limit`` frames, as :meth:`read` gives them, in one tight
        loop (a flood is read at the cost of the system calls, little more)."""
        if self.offload:
            frames = []
            for _ in range(limit):
                f = self.read()
                if f is None:
                    break
                frames.append(f)
            return frames
        out: list[bytes] = []
        append, read, fd, size = out.append, os.read, self.fd, self._bufsize
        try:
            for _ in range(limit):
                append(read(fd, size))
        except BlockingIOError:
            pass
        self.frames_in += len(out)
        return out

    def write(self, frame: bytes) -> bool:
        """Send one frame; False (counted) when the kernel refused it (device
        down, or its queue full): Ethernet is allowed to lose frames."""
        if not self.offload:
            return self._send((frame,))
        if len(frame) > self.mtu + ETH_HEADER:
            return self._send(_gso_frame(frame, self.mtu))
        return self._send((_NO_VNET, frame))

    def write_split(
        self, head: bytes, payload: bytes, csum_start: int, csum_offset: int, mss: int = 0
    ) -> bool:
        """Send the frame ``head + payload`` (one gather write, nothing joined).
        ``csum_start`` 0: the frame is complete. Otherwise its TCP/UDP
        checksum field (at ``csum_start + csum_offset``) holds only the
        pseudo-header sum and the kernel adds the sum from ``csum_start`` to
        the end (VIRTIO_NET_HDR_F_NEEDS_CSUM), as a NIC with checksum offload
        would; that and an over-MTU IPv4/TCP frame (sent as a TSO
        super-segment, cut into ``mss``-octet payloads, or as the MTU allows
        when 0) need ``offload=True``. False (counted) if refused."""
        size = len(head) + len(payload)
        if type(payload) is LENT:
            lent: Lent | None = cast("Lent", payload)
            tail = cast("tuple[bytes, ...]", cast("Lent", payload).kernel_views())
        else:
            lent = None
            tail = (payload,)
        if not csum_start:
            parts: tuple[bytes, ...] = ((_NO_VNET, head) if self.offload else (head,)) + tail
        elif not self.offload:
            raise ValueError("a partial checksum needs a device opened with offload=True")
        elif size > self.mtu + ETH_HEADER and csum_offset == tcp.CHECKSUM_AT:
            thl = (head[csum_start + tcp.DATA_OFFSET_AT] >> 4) * 4
            vnet = _TSO_HEADERS.get((csum_start, thl, mss, self.mtu))
            if vnet is None:
                vnet = self._tso_header(csum_start, thl, mss)
            parts = (vnet, head, *tail)
        else:
            parts = (virtio.needs_csum(csum_start, csum_offset), head, *tail)
        return self._send(parts, lent)

    def write_frames(self, frames: list[bytes | SplitFrame]) -> None:
        """Each frame as :meth:`write` (bytes) or :meth:`write_split` would
        send it, in one loop: the frames a software-cut segment makes (45 of
        them per 65,160 octets) leave without three calls each through the
        link's layers. Refused ones are counted, as there."""
        if self.offload:
            limit = self.mtu + ETH_HEADER
            for f in frames:
                if type(f) is not SplitFrame:
                    self.write(bytes(f))
                    continue
                head, payload, start = f.head, f.payload, f.csum_start
                if not (start and f.csum_offset == _TCP_CSUM and len(head) + len(payload) > limit):
                    self.write_split(head, payload, start, f.csum_offset, f.mss)
                    continue
                lent = cast("Lent", payload) if type(payload) is LENT else None
                # A TSO super-segment (a bulk sender's every frame): write_split's
                # frame, its virtio header from the cache, written here.
                thl = (head[start + _TCP_DOFF] >> 4) * 4
                vnet = _TSO_HEADERS.get((start, thl, f.mss, self.mtu))
                if vnet is None:
                    vnet = self._tso_header(start, thl, f.mss)
                try:
                    if lent is None:
                        os.writev(self.fd, (vnet, head, payload))
                    else:
                        os.writev(self.fd, (vnet, head, *lent.kernel_views()))
                except OSError as exc:
                    self._refused(exc, lent)
                    continue
                self.frames_out += 1
            return
        fd, write, writev, sent = self.fd, os.write, os.writev, 0
        try:
            for f in frames:
                if type(f) is SplitFrame and f.csum_start:
                    raise ValueError("a partial checksum needs a device opened with offload=True")
                try:
                    if type(f) is bytes:
                        write(fd, f)
                    elif type(f) is SplitFrame:
                        writev(fd, (f.head, f.payload))
                    else:
                        write(fd, bytes(f))
                except OSError as exc:
                    if exc.errno not in (errno.EAGAIN, errno.EIO, errno.ENOBUFS, errno.EINVAL):
                        raise
                    self.write_errors += 1
                    continue
                sent += 1
        finally:
            self.frames_out += sent

    def _tso_header(self, csum_start: int, thl: int, mss: int) -> bytes:
        """The virtio header of a TSO super-segment whose TCP header (``thl``
        octets) starts at ``csum_start``, cut into ``mss``-octet payloads (0:
        as the MTU allows); kept per shape (a few per device and MSS)."""
        # virtio's gso_size is the payload per segment: the MTU that gives it.
        mtu = csum_start - ETH_HEADER + thl + mss if mss else self.mtu
        made = virtio.tso_tcpv4(csum_start, thl, min(mtu, self.mtu))
        if len(_TSO_HEADERS) >= 64:
            _TSO_HEADERS.clear()
        _TSO_HEADERS[(csum_start, thl, mss, self.mtu)] = made
        return made

    def _send(self, parts: tuple[bytes, ...], lent: Lent | None = None) -> bool:
        """One frame in ``parts`` (a gather write); False (counted) when refused.
        ``lent``: the Lent payload whose kernel view ``parts`` carries."""
        try:
            os.writev(self.fd, parts)
        except OSError as exc:
            self._refused(exc, lent)
            return False
        self.frames_out += 1
        return True

    def _refused(self, exc: OSError, lent: Lent | None) -> None:
        """A write the kernel refused: counted (Ethernet may lose frames),
        unless it is no refusal a link may have. EFAULT with a lent payload:
        the kernel could not copy the file's pages (the file shrank), so
        the frame is lost for good: counted apart and the lender told."""
        if lent is not None and exc.errno == errno.EFAULT:
            self.write_errors += 1
            self.lent_refused += 1
            lent.refused(exc)
            return
        if exc.errno not in (errno.EAGAIN, errno.EIO, errno.ENOBUFS, errno.EINVAL):
            raise exc
        self.write_errors += 1

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> TapDevice:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _busy(name: str) -> str:
    """EBUSY from TUNSETIFF: who holds the device, if /proc tells (tun's fdinfo
    has an ``iff:`` line per open device)."""
    holders = []
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        pids = []
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fdinfo")
        except OSError:
            continue
        for fd in fds:
            try:
                with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                    info = f.read()
            except OSError:
                continue
            if f"iff:\t{name}\n" in info:
                try:
                    with open(f"/proc/{pid}/cmdline", "rb") as f:
                        cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
                except OSError:
                    cmd = "?"
                holders.append(f"pid {pid} ({cmd[:80]})")
                break
    who = "held by " + ", ".join(holders) if holders else "held by another process"
    return f"TAP device {name!r} is busy: {who}"


class KernelChecked(bytes):
    """A frame marked as one whose transport checksum is vouched for, for a
    caller that makes frames itself (bench/stack_receive.py) and passes this
    type as ``Host.receive_frames``' ``vouched``. A TAP gives its vouched
    frames as plain bytes (:attr:`TapDevice.vouched`)."""

    __slots__ = ()


class KernelUnchecked(bytes):
    """A frame from a TAP opened with offloads whose transport checksum the
    kernel does not vouch for (see :meth:`TapDevice.read`): verified as usual."""

    __slots__ = ()


def _gso_frame(frame: bytes, mtu: int) -> tuple[bytes, ...]:
    """virtio_net_hdr + frame (as parts for a gather write) asking the kernel to treat an over-MTU IPv4/TCP
    frame as one TSO super-segment (cut into MTU-sized segments if it must
    forward it; taken whole when it is for the kernel itself). As for a NIC,
    the TCP checksum field then holds only the pseudo-header sum."""
    ip = ETH_HEADER
    if (
        len(frame) < ip + ipv4.MIN_HEADER_LEN + tcp.MIN_HEADER_LEN
        or _ETHERTYPE.unpack_from(frame, ethernet.ETHERTYPE_AT)[0] != ethernet.ETHERTYPE_IPV4
        or frame[ip + ipv4.PROTO_AT] != ipv4.PROTO_TCP
    ):
        return (_NO_VNET, frame)
    ihl = (frame[ip + ipv4.VERSION_IHL_AT] & 0x0F) * 4
    start = ip + ihl
    thl = (frame[start + tcp.DATA_OFFSET_AT] >> 4) * 4
    src, dst = _ADDRS.unpack_from(frame, ip + ipv4.SRC_AT)
    partial = fold(pseudo_header_sum(src, dst, ipv4.PROTO_TCP, len(frame) - start))
    header = virtio.tso_tcpv4(start, thl, mtu)
    csum = start + tcp.CHECKSUM_AT
    return (header, frame[:csum], partial.to_bytes(2, "big"), frame[csum + 2 :])


# glibc's mallopt parameters (malloc.h) and the values keep_freed_heap sets.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 4 << 20
TRIM_THRESHOLD = 16 << 20
_heap_kept: bool | None = None


def keep_freed_heap() -> bool:
    """Have glibc's malloc keep freed memory for reuse (once per process;
    True when it is so). A link's buffers are 64 KiB frames read in batches
    of up to 64 (4 MiB), joined runs and 1 MiB file blocks, allocated and
    freed again within a loop turn. With glibc's dynamic thresholds the
    free at the end of a batch hands the heap's top back to the kernel
    (trim) and the next batch faults it in again, page by page: 370 minor
    page faults per MB of an offloaded upload, a quarter of its CPU
    (bench/stack_apps.py). Pinned (mmap above 4 MiB, trim beyond 16 MiB
    free), the same memory is reused. Not glibc, or a MALLOC_* /
    GLIBC_TUNABLES malloc setting in the environment (the user's choice):
    nothing is changed, False."""
    global _heap_kept
    if _heap_kept is None:
        _heap_kept = False
        chosen = any(k.startswith("MALLOC_") for k in os.environ)
        if not chosen and "glibc.malloc." not in os.environ.get("GLIBC_TUNABLES", ""):
            try:
                mallopt = ctypes.CDLL(None).mallopt
            except (OSError, AttributeError):
                return False  # no mallopt: not glibc's malloc to tune
            mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
            _heap_kept = bool(
                mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
                and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
            )
    return _heap_kept


def big_tso_max(release: str | None = None) -> int:
    """The largest IPv4 TSO packet this kernel's TAP takes whole, if over
    65,535 octets (BIG_TSO_MAX_TOTAL), else 0. Linux 6.3 and later accept an
    IPv4 GSO packet with total length 0 as one of the frame's length (BIG TCP:
    ip_rcv_core's iph_totlen); the TAP builds it from a virtio GSO frame of up
    to 17 fragments of 32 KiB. Probed by the kernel's release (``release``:
    a ``uname -r`` to judge instead), not by sending one: a probe frame would
    reach the namespace's TCP. Checked on 6.18: a 256 KiB GSO frame (gso_size
    1448, total length 0) from a TAP reached a kernel socket whole and
    acknowledged, no drop counted."""
    rel = platform.release() if release is None else release
    try:
        major, minor = (int(x) for x in rel.split("-")[0].split(".")[:2])
    except ValueError:
        return 0
    return BIG_TSO_MAX_TOTAL if (major, minor) >= (6, 3) else 0


class TapLink:
    """A :class:`~synack.links.tap.TapDevice` watched by the loop. Frames are
    read in batches (up to ``batch`` per wake-up) so a burst costs one pass of
    the adapter loop, not one per frame. Starting one keeps the process's
    freed heap for reuse (:func:`keep_freed_heap`)."""

    def __init__(self, device: TapDevice, *, batch: int = 64) -> None:
        self.device = device
        self.batch = batch
        self.tso = device.offload
        self.tso_max = device.tso_max
        self.vouched = device.vouched
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sink: FrameSink | None = None

    def start(self, loop: asyncio.AbstractEventLoop, sink: FrameSink) -> None:
        self._loop = loop
        self._sink = sink
        keep_freed_heap()
        loop.add_reader(self.device.fileno(), self._readable)

    def _readable(self) -> None:
        frames = self.device.read_batch(self.batch)
        if frames and self._sink is not None:
            self._sink(frames)

    def send(self, frame: bytes) -> None:
        self.device.write(frame)

    def send_frames(self, frames: list[bytes | SplitFrame]) -> None:
        self.device.write_frames(frames)

    def send_split(self, frame: SplitFrame) -> None:
        self.device.write_split(
            frame.head, frame.payload, frame.csum_start, frame.csum_offset, frame.mss
        )

    def close(self) -> None:
        if self._loop is not None and self.device.fd >= 0:
            self._loop.remove_reader(self.device.fileno())
        self.device.close()

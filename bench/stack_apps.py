"""The same aiohttp server on the kernel (over veth) and under ``synack run`` (over TAP).

One run, same clients (ab, curl), same machine: the kernel's figures are the
anchor, synack's are printed next to them as ratios. Rows: keep-alive
requests/s (``ab -k``), a new connection per request (``ab``), a 50 MB download
and upload (curl, timed by its own clock from the connect to the last byte:
the upload's file is in curl's memory before it starts, the download goes to
/dev/null; a client that read through a pipe into Python capped both servers
near 500 MB/s and made download ratios look two to five times better than they
are), then with ``--offload``; last, 1,000 connections opened at
once against synack (time to all established, and the kernel's TX drop
counter on the TAP device from ``ip -s link``, which should stay 0).

Where the time goes, from the same run: the server process's CPU per request
(or per MB) from /proc (user + system, all threads), for synack split into the
program's thread and the stack's loop thread, how much of it is system
(kernel) time, and the frames per request (or per MB) on the TAP device, in
and out. ``--rounds N`` repeats the three servers in turn N times and prints
medians with the min-max range; ``--rows`` runs only some rows.

    sudo .venv/bin/python bench/stack_apps.py [--requests 3000] [--mb 50] [--rounds 3]
        [--rows download_MBps,upload_MBps]

Needs root, /dev/net/tun, iproute2, ab (apache2-utils), curl and aiohttp.
``figures()`` gives the rows to ``bench/run_all.py`` (docs/performance.md).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import re
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator

from _common import Figure
from _common import spread as median_min_max

SERVER = """
import hashlib
from aiohttp import web
async def upload(request):
    n = 0
    async for chunk in request.content.iter_chunked(1 << 16):
        n += len(chunk)
    return web.Response(text=str(n))
async def hello(request):
    return web.Response(text="hello")
app = web.Application(client_max_size=1 << 30)
app.add_routes([web.post("/upload", upload), web.get("/hello", hello), web.static("/files", ".")])
web.run_app(app, host="0.0.0.0", port=8081, print=lambda s: print(s, flush=True), access_log=None)
"""

BURST = """
import selectors, socket, sys, time
ip, n = sys.argv[1], int(sys.argv[2])
sel = selectors.DefaultSelector()
t0 = time.perf_counter()
socks = []
for _ in range(n):
    s = socket.socket(); s.setblocking(False)
    s.connect_ex((ip, 8081)); sel.register(s, selectors.EVENT_WRITE); socks.append(s)
done, lat = 0, []
deadline = time.monotonic() + 30
while done < n and time.monotonic() < deadline:
    for key, _ in sel.select(1):
        sel.unregister(key.fileobj); done += 1; lat.append(time.perf_counter() - t0)
lat.sort()
print(done, round(lat[len(lat) // 2] * 1000, 1), round(lat[-1] * 1000, 1))
for s in socks: s.close()
"""


def sh(*argv: str, timeout: float = 120) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True, timeout=timeout).stdout


@contextlib.contextmanager
def veth() -> Iterator[tuple[str, str, str]]:
    """(client namespace, server namespace, server ip) joined by a veth pair."""
    tag = secrets.token_hex(3)
    a, b, sub = f"synack-bc{tag}", f"synack-bs{tag}", 1 + secrets.randbelow(254)
    sh("ip", "netns", "add", a)
    sh("ip", "netns", "add", b)
    try:
        sh("ip", "-n", a, "link", "add", "va", "type", "veth", "peer", "vb", "netns", b)
        sh("ip", "-n", a, "addr", "add", f"10.213.{sub}.1/24", "dev", "va")
        sh("ip", "-n", b, "addr", "add", f"10.213.{sub}.2/24", "dev", "vb")
        for ns, dev in ((a, "va"), (b, "vb"), (a, "lo"), (b, "lo")):
            sh("ip", "-n", ns, "link", "set", dev, "up")
        yield a, b, f"10.213.{sub}.2"
    finally:
        sh("ip", "netns", "del", a)
        sh("ip", "netns", "del", b)


@contextlib.contextmanager
def tapns() -> Iterator[tuple[str, str, str]]:
    """(namespace, persistent TAP device in it with the kernel's NET.1, NET)."""
    tag = secrets.token_hex(3)
    ns, dev, sub = f"synack-bt{tag}", f"sybt{tag}", 1 + secrets.randbelow(254)
    sh("ip", "netns", "add", ns)
    try:
        sh("ip", "-n", ns, "tuntap", "add", "dev", dev, "mode", "tap")
        sh("ip", "-n", ns, "addr", "add", f"10.213.{sub}.1/24", "dev", dev)
        sh("ip", "-n", ns, "link", "set", dev, "up")
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        yield ns, dev, f"10.213.{sub}"
    finally:
        sh("ip", "netns", "del", ns)


@contextlib.contextmanager
def server(ns: str, argv: list[str], cwd: str) -> Iterator[int]:
    """Runs ``argv`` in ``ns``; yields its process id (``ip netns exec`` execs it)."""
    proc = subprocess.Popen(
        ["ip", "netns", "exec", ns, *argv],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        while "Running on" not in (line := proc.stdout.readline()):
            if not line:
                raise SystemExit("server did not start")
        yield proc.pid
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def served_files(mb: int) -> Iterator[tuple[str, str]]:
    """A temporary directory holding the server (app.py) and the ``mb`` MB
    file it serves and the upload sends: (directory, the file's path)."""
    with tempfile.TemporaryDirectory() as root:
        path = os.path.join(root, "big.bin")
        with open(path, "wb") as f:
            f.write(hashlib.shake_256(b"bench").digest(mb << 20))
        with open(os.path.join(root, "app.py"), "w") as f:
            f.write(SERVER)
        yield root, path


TICK = os.sysconf("SC_CLK_TCK")
ROWS = ("keepalive_rps", "newconn_rps", "download_MBps", "upload_MBps", "burst")


def cpu_seconds(pid: int) -> tuple[float, float, float]:
    """(program's thread, every other thread, system part of both) user +
    system CPU seconds of ``pid``: for ``synack run`` the other thread is the
    stack's loop thread; the system part is the kernel's work on the
    process's behalf (for synack, the TAP's reads and writes, which carry the
    kernel's own receive and send processing)."""
    main = other = system = 0.0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # a thread that ended
        t = (int(fields[11]) + int(fields[12])) / TICK  # utime, stime
        system += int(fields[12]) / TICK
        if int(tid) == pid:
            main += t
        else:
            other += t
    return main, other, system


def frames(ns: str, dev: str | None) -> tuple[int, int]:
    """(frames the kernel sent to synack, frames synack sent) on the TAP device."""
    if dev is None:
        return 0, 0
    lines = sh("ip", "-n", ns, "-s", "link", "show", dev).splitlines()
    rx = next(i for i, line in enumerate(lines) if line.strip().startswith("RX:"))
    tx = next(i for i, line in enumerate(lines) if line.strip().startswith("TX:"))
    return int(lines[tx + 1].split()[1]), int(lines[rx + 1].split()[1])


def measure(
    ns: str,
    ip: str,
    requests: int,
    mb: int,
    path: str,
    pid: int,
    dev: str | None = None,
    rows: tuple[str, ...] = (),
) -> dict[str, float]:
    """Each row's rate, and per unit (request or MB): the server's CPU (us,
    program thread and other threads) and the TAP's frames in and out."""
    base = f"http://{ip}:8081"
    ex = ["ip", "netns", "exec", ns]
    r: dict[str, float] = {}

    def row(key: str, unit: float, run: Callable[[], float]) -> None:
        if key not in rows:
            return
        c0, f0 = cpu_seconds(pid), frames(ns, dev)
        r[key] = run()
        c1, f1 = cpu_seconds(pid), frames(ns, dev)
        r[f"{key} cpu_main"] = (c1[0] - c0[0]) / unit * 1e6
        r[f"{key} cpu_other"] = (c1[1] - c0[1]) / unit * 1e6
        r[f"{key} cpu_sys"] = (c1[2] - c0[2]) / unit * 1e6
        r[f"{key} frames_in"] = (f1[0] - f0[0]) / unit
        r[f"{key} frames_out"] = (f1[1] - f0[1]) / unit

    def ab(*argv: str) -> float:
        out = sh(*ex, "ab", "-q", *argv, f"{base}/hello")
        return float(re.search(r"Requests per second:\s+([\d.]+)", out)[1])  # type: ignore[index]

    # curl's own clock (time_total: from the connect to the last byte), not the
    # process's: curl's start-up, loading the file to send (--data-binary reads
    # it all before the transfer, so the send is never waiting for a disk read)
    # and keeping what it received (to /dev/null, not through a pipe into this
    # process) cost both servers the same and would pull every ratio towards 1.
    def download() -> float:
        out = sh(
            *ex,
            "curl", "-sS", "--max-time", "120", "-o", "/dev/null",
            "-w", "%{size_download} %{time_total}", f"{base}/files/big.bin",
        )  # fmt: skip
        size, took = out.split()
        assert int(size) == mb << 20, out
        return (mb << 20) / float(took) / 1e6

    def upload() -> float:
        out = sh(
            *ex,
            "curl", "-sS", "--max-time", "120", "--data-binary", f"@{path}",
            "-w", " %{time_total}", f"{base}/upload",
        )  # fmt: skip
        got, took = out.split()
        assert got == str(mb << 20), out
        return (mb << 20) / float(took) / 1e6

    row("keepalive_rps", requests, lambda: ab("-k", "-n", str(requests), "-c", "20"))
    row("newconn_rps", requests // 3, lambda: ab("-n", str(requests // 3), "-c", "20"))
    row("download_MBps", mb, download)
    row("upload_MBps", mb, upload)
    return r


def tap_drops(ns: str, dev: str) -> int:
    out = sh("ip", "-n", ns, "-s", "link", "show", dev)
    lines = out.splitlines()
    i = next(i for i, line in enumerate(lines) if line.strip().startswith("TX:"))
    return int(lines[i + 1].split()[3])


def spread(values: list[float], digits: int = 1) -> str:
    """The median, and the range when there is more than one round."""
    med, lo, hi = median_min_max(values)
    if len(values) == 1:
        return f"{med:.{digits}f}"
    return f"{med:.{digits}f} ({lo:.{digits}f}-{hi:.{digits}f})"


LABELS = ("kernel", "synack", "synack --offload")
# The goals (synack / kernel), per row: plain, then with --offload.
GOALS = {
    "keepalive_rps": (0.7, 0.7),
    "newconn_rps": (0.6, 0.6),
    "download_MBps": (0.5, 0.8),
    "upload_MBps": (0.5, 0.8),
}
UNITS = {
    "keepalive_rps": ("requests/s", "aiohttp keep-alive requests (ab -k -c 20)"),
    "newconn_rps": ("requests/s", "aiohttp, a new connection per request (ab -c 20)"),
    "download_MBps": ("MB/s", "aiohttp static-file download (curl to /dev/null)"),
    "upload_MBps": ("MB/s", "aiohttp POST upload (curl --data-binary)"),
}


def collect(
    requests: int, mb: int, rounds: int, rows: tuple[str, ...], burst_n: int
) -> tuple[dict[str, list[dict[str, float]]], tuple[list[str], int] | None]:
    """Each server's measurements per round (kernel, synack, synack --offload in
    turn), and the burst's (established, p50 ms, last ms) and TAP drops."""
    here = os.path.dirname(os.path.abspath(__file__))
    os.environ["PYTHONPATH"] = os.path.join(here, "..", "src")
    runs: dict[str, list[dict[str, float]]] = {label: [] for label in LABELS}
    burst = None
    with served_files(mb) as (root, path):
        synack = [sys.executable, "-m", "synack", "run"]
        for _ in range(rounds):
            with veth() as (cli, srv, ip), server(srv, [sys.executable, "app.py"], root) as pid:
                runs["kernel"].append(measure(cli, ip, requests, mb, path, pid, rows=rows))
            for label, extra in (("synack", []), ("synack --offload", ["--offload"])):
                with tapns() as (ns, dev, net):
                    argv = [*synack, "--tap", dev, "--ip", f"{net}.2/24", *extra, "--", "app.py"]
                    with server(ns, argv, root) as pid:
                        runs[label].append(
                            measure(ns, f"{net}.2", requests, mb, path, pid, dev, rows)
                        )
                        if not extra and burst is None and "burst" in rows:
                            before = tap_drops(ns, dev)
                            out = sh(
                                "ip", "netns", "exec", ns, sys.executable, "-c", BURST,
                                f"{net}.2", str(burst_n),
                            )  # fmt: skip
                            burst = (out.split(), tap_drops(ns, dev) - before)

    return runs, burst


def figures(quick: bool) -> list[Figure]:
    """The four rows, plain and with --offload, for bench/run_all.py."""
    if os.geteuid() != 0 or not os.path.exists("/dev/net/tun"):
        raise SystemExit("needs root and /dev/net/tun")
    rounds, mb, requests = (3, 100, 3000) if quick else (5, 100, 6000)
    rows = tuple(ROWS)
    runs, burst = collect(requests, mb, rounds, rows, 1000)
    command = f".venv/bin/python bench/stack_apps.py --rounds {rounds} --mb {mb}"
    command += f" --requests {requests}"
    out = []
    for key in ROWS:
        if key == "burst":
            continue
        unit, what = UNITS[key]
        kernel = [r[key] for r in runs["kernel"]]
        k_cpu = statistics.median(
            r[f"{key} cpu_main"] + r[f"{key} cpu_other"] for r in runs["kernel"]
        )
        per = "request" if unit == "requests/s" else "MB"
        for label, goal in zip(LABELS[1:], GOALS[key], strict=True):
            mine = [r[key] for r in runs[label]]
            cpu = statistics.median(
                r[f"{key} cpu_main"] + r[f"{key} cpu_other"] for r in runs[label]
            )
            note = f"server CPU {cpu:.0f} us per {per} (kernel {k_cpu:.0f})"
            if key == "newconn_rps" and label == "synack" and burst is not None:
                (done, _p50, worst), drops = burst
                note += f"; 1,000 connects at once: {done} established, last {worst} ms, "
                note += f"TAP TX drops {drops}"
            out.append(
                Figure(
                    bench="stack_apps",
                    name=f"{what}, `{label.replace('synack', 'synack run')}` over TAP",
                    value=statistics.median(mine),
                    unit=unit,
                    anchor="the same server on the kernel, over veth",
                    anchor_value=statistics.median(kernel),
                    ratios=[m / k for m, k in zip(mine, kernel, strict=True)],
                    goal=goal,
                    command=command,
                    note=note,
                )
            )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--mb", type=int, default=50)
    ap.add_argument("--burst", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=1, help="kernel and synack in turn, N times")
    ap.add_argument(
        "--rows",
        default=",".join(ROWS),
        help="which rows to run, comma-separated (default all: %(default)s)",
    )
    args = ap.parse_args()
    rows = tuple(r.strip() for r in args.rows.split(",") if r.strip())
    if not rows or set(rows) - set(ROWS):
        ap.error(f"--rows takes some of {','.join(ROWS)}")
    runs, burst = collect(args.requests, args.mb, args.rounds, rows, args.burst)
    labels = LABELS

    def col(label: str, key: str) -> list[float]:
        return [r[key] for r in runs[label]]

    def ratios(label: str, key: str) -> list[float]:
        return [s / k for s, k in zip(col(label, key), col("kernel", key), strict=True)]

    n = args.rounds
    print(f"{n} round(s); medians" + (" (min-max)" if n > 1 else "") + "; ratio = synack / kernel")
    w = 24 if n > 1 else 10
    print(
        f"{'':15} {'kernel':>{w}} {'synack':>{w}} {'ratio':>{w}} {'--offload':>{w}} {'ratio':>{w}}"
    )
    rows = tuple(key for key in ROWS if key in rows and key != "burst")
    for key in rows:
        cells = [spread(col("kernel", key)), spread(col("synack", key))]
        cells += [spread(ratios("synack", key), 2), spread(col("synack --offload", key))]
        cells += [spread(ratios("synack --offload", key), 2)]
        print(f"{key:15} " + " ".join(f"{c:>{w}}" for c in cells))
    print()
    # The kernel's own TCP work is mostly outside its server's process (softirq),
    # synack's is all inside: this says where synack's time goes, not a ratio.
    print("server process CPU per unit (request, or MB), us: synack's program thread +")
    print("stack thread; frames per unit on the TAP, in / out (medians)")
    print(f"{'':15} {'kernel':>8} {'synack':>16} {'frames':>13} {'--offload':>16} {'frames':>13}")
    for key in rows:
        k = statistics.median(col("kernel", f"{key} cpu_main"))
        k += statistics.median(col("kernel", f"{key} cpu_other"))
        cells = [f"{k:.0f}"]
        for label in ("synack", "synack --offload"):
            m = statistics.median(col(label, f"{key} cpu_main"))
            o = statistics.median(col(label, f"{key} cpu_other"))
            fi = statistics.median(col(label, f"{key} frames_in"))
            fo = statistics.median(col(label, f"{key} frames_out"))
            cells += [f"{m:.0f} + {o:.0f}", f"{fi:.1f} / {fo:.1f}"]
        print(f"{key:15} {cells[0]:>8} {cells[1]:>16} {cells[2]:>13} {cells[3]:>16} {cells[4]:>13}")
    print()
    print("of which system (kernel) CPU per unit, us (medians)")
    print(f"{'':15} {'kernel':>8} {'synack':>8} {'--offload':>10}")
    for key in rows:
        cells = [f"{statistics.median(col(label, f'{key} cpu_sys')):.0f}" for label in labels]
        print(f"{key:15} {cells[0]:>8} {cells[1]:>8} {cells[2]:>10}")
    if burst is not None:
        (done, p50, worst), drops = burst
        print(
            f"{args.burst} connects at once to synack: {done} established, "
            f"p50 {p50} ms, last {worst} ms, TAP TX drops {drops}"
        )


if __name__ == "__main__":
    main()

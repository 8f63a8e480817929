"""Where the stack runs: on its own thread, or in a program's running asyncio loop.

The sans-IO host is only ever touched by one thread at a time: the thread of
the event loop that *owns* it. A :class:`LoopThread` starts an asyncio loop on
a daemon thread named ``synack-stack``, which owns the host at first.
Everything the adapters and links register for their hosts - the link's
reader, each bridge's reader and writer, the host's timer, their
``call_soon`` - goes through :class:`HostLoop` (``LoopThread.host_loop``), an
event-loop face that records each registration and places it on the owning
loop, so that the lot can move to another loop.

A :class:`HostingLoop` (asyncio's selector loop, which
:mod:`synack.adapters.patch` makes the program's loop) takes the host over when
it starts running and gives it back when it stops, in a ``finally``: while a
program's asyncio loop runs, the stack runs in that loop's thread, driven by
that loop, and the program's thread and the stack's no longer hand the GIL to
each other on every system call (a third of aiohttp's keep-alive time). A
handover is two steps, each on its own loop's thread: the owner takes every
registration off its loop (the host is then nobody's, and callbacks already
queued on that loop for it are ignored), then the new owner puts them on its
loop. Only one program loop holds the host at a time; another that runs
meanwhile, in another thread, works through ``call``/``post`` as any thread
does. Around a blocking call on the owning thread (a blocking socket used
inside a coroutine) the program loop lends the host back to the stack thread
(:meth:`LoopThread.lent`), so that call can complete.

``call(fn)`` runs ``fn()`` on the owning thread: inline when called there,
otherwise posted to the owner and waited for. ``post(fn)`` runs it soon, in
order, without waiting; posts made before the owner gets to them share one
wake-up of its loop.

Layer: adapters. Imports only the standard library.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import errno
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any, TypeVar, TypeVarTuple, Unpack

T = TypeVar("T")
Ts = TypeVarTuple("Ts")
_Callback = Callable[..., object]


def _fd(fileobj: Any) -> int:
    return fileobj if isinstance(fileobj, int) else int(fileobj.fileno())


class _Timer(asyncio.TimerHandle):
    """A timer of the host's: armed on whichever loop owns the host, moved with it."""

    __slots__ = ("_fn", "_fn_args", "_home", "_real")

    def __init__(
        self,
        when: float,
        fn: _Callback,
        args: tuple[Any, ...],
        home: HostLoop,
        context: contextvars.Context | None,
    ) -> None:
        super().__init__(when, fn, args, home, context)
        self._home = home
        self._fn = fn
        self._fn_args = args
        self._real: asyncio.TimerHandle | None = None

    def _arm(self, loop: asyncio.AbstractEventLoop) -> None:
        self._real = loop.call_at(self.when(), self._fire, loop)

    def _disarm(self) -> None:
        if self._real is not None:
            self._real.cancel()
            self._real = None

    def _fire(self, loop: asyncio.AbstractEventLoop) -> None:
        home = self._home
        if loop is not home._loop:
            return  # queued on a loop that has handed the host over since
        home._timers.discard(self)
        self._real = None
        if not self.cancelled():
            home._run(self._fn, self._fn_args)

    def cancel(self) -> None:
        self._disarm()
        self._home._timers.discard(self)
        super().cancel()


class HostLoop(asyncio.AbstractEventLoop):
    """The event loop the host is driven by: whichever real loop owns it now.

    It implements what the adapters and links use (``time``, ``call_soon``,
    ``call_soon_threadsafe``, ``call_at``, ``call_later``, ``add_reader`` and
    friends, ``call_exception_handler``); each registration is kept here so a
    handover can take it off one loop and put it on the next. Its clock is the
    monotonic clock every asyncio loop uses, so deadlines survive a move.
    """

    def __init__(self, first: asyncio.AbstractEventLoop) -> None:
        self._lock = threading.Lock()
        self._fallback = first  # reports errors while the host is in transit
        self._loop: asyncio.AbstractEventLoop | None = first  # None during a handover
        self._owner: int | None = None  # the owning thread's ident
        self._readers: dict[int, tuple[_Callback, tuple[Any, ...]]] = {}
        self._writers: dict[int, tuple[_Callback, tuple[Any, ...]]] = {}
        self._timers: set[_Timer] = set()
        # (handle, callback, args); no handle for a post_soon (never cancelled).
        self._soon: deque[tuple[asyncio.Handle | None, _Callback, tuple[Any, ...]]] = deque()
        self._woken: asyncio.Handle | None = None  # the drain queued on the owner
        # Per program loop: callbacks that wait for it to own the host again.
        self._deferred: dict[asyncio.AbstractEventLoop, list[Callable[[], object]]] = {}

    def owned_here(self) -> bool:
        """This thread owns the host (it may touch it)."""
        return self._owner == threading.get_ident()

    def owner(self) -> asyncio.AbstractEventLoop | None:
        return self._loop

    # What the adapters call -------------------------------------------------
    # Every asyncio loop's clock, as the builtin itself: the driver's now()
    # (asked on every read, write and pump) is then no Python call.
    time = staticmethod(time.monotonic)

    def get_debug(self) -> bool:
        return False

    def is_running(self) -> bool:
        return True

    def is_closed(self) -> bool:
        return False

    def call_soon(
        self,
        callback: Callable[[Unpack[Ts]], object],
        *args: *Ts,
        context: contextvars.Context | None = None,
    ) -> asyncio.Handle:
        """Soon, in order, on the owning thread (from any thread)."""
        handle = asyncio.Handle(callback, args, self, context)
        with self._lock:
            self._soon.append((handle, callback, args))
            if self._woken is None and (loop := self._loop) is not None:
                if self._owner == threading.get_ident():
                    self._woken = loop.call_soon(self._drain, loop)
                else:
                    self._woken = loop.call_soon_threadsafe(self._drain, loop)
        return handle

    def post_soon(self, callback: Callable[[], object]) -> None:
        """``call_soon(callback)`` for a callback nobody cancels (the driver's
        pump, :meth:`LoopThread.post`): queued the same way, in the same
        order, but without the ``asyncio.Handle`` that ``call_soon`` makes
        and returns (a Python ``__init__`` that copies the context and asks
        for the debug flag, ~1 us; the driver pumps this way on most new
        connections and every few requests). Nothing else differs: a queued
        callback is run by :meth:`_drain` itself, never through its handle
        (whose copied context went unused)."""
        with self._lock:
            self._soon.append((None, callback, ()))
            if self._woken is None and (loop := self._loop) is not None:
                if self._owner == threading.get_ident():
                    self._woken = loop.call_soon(self._drain, loop)
                else:
                    self._woken = loop.call_soon_threadsafe(self._drain, loop)

    def call_soon_threadsafe(
        self,
        callback: Callable[[Unpack[Ts]], object],
        *args: *Ts,
        context: contextvars.Context | None = None,
    ) -> asyncio.Handle:
        return self.call_soon(callback, *args, context=context)

    def _drain(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._lock:
            if loop is not self._loop:
                return  # the host moved on; its new owner drains
            self._woken = None
            n = len(self._soon)
        # Only what was queued before: a callback queued by one of these runs
        # in the next iteration, after the loop has looked at its descriptors.
        soon = self._soon
        for _ in range(n):
            handle, fn, args = soon.popleft()
            if handle is None or not handle.cancelled():
                try:  # self._run, inline (once per callback)
                    fn(*args)
                except (SystemExit, KeyboardInterrupt):
                    raise
                except BaseException as exc:  # one failing callback must not strand the rest
                    self._failed(fn, exc)

    def _run(self, fn: _Callback, args: tuple[Any, ...]) -> None:
        try:
            fn(*args)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:  # one failing callback must not strand the rest
            self._failed(fn, exc)

    def _failed(self, fn: _Callback, exc: BaseException) -> None:
        self.call_exception_handler({"message": f"synack: {fn!r} failed", "exception": exc})

    def call_at(
        self,
        when: float,
        callback: Callable[[Unpack[Ts]], object],
        *args: *Ts,
        context: contextvars.Context | None = None,
    ) -> asyncio.TimerHandle:
        timer = _Timer(when, callback, args, self, context)
        self._timers.add(timer)
        if (loop := self._loop) is not None:
            timer._arm(loop)
        return timer

    def call_later(
        self,
        delay: float,
        callback: Callable[[Unpack[Ts]], object],
        *args: *Ts,
        context: contextvars.Context | None = None,
    ) -> asyncio.TimerHandle:
        return self.call_at(self.time() + delay, callback, *args, context=context)

    def _timer_handle_cancelled(self, handle: asyncio.TimerHandle) -> None:
        pass  # asyncio.TimerHandle.cancel's notice; a _Timer has disarmed itself

    def add_reader(self, fd: Any, callback: Callable[[Unpack[Ts]], Any], *args: *Ts) -> None:
        n = _fd(fd)
        self._readers[n] = (callback, args)
        if (loop := self._loop) is not None:
            loop.add_reader(n, self._readable, n, loop)

    def remove_reader(self, fd: Any) -> bool:
        n = _fd(fd)
        if self._readers.pop(n, None) is None:
            return False
        if (loop := self._loop) is not None:
            loop.remove_reader(n)
        return True

    def add_writer(self, fd: Any, callback: Callable[[Unpack[Ts]], Any], *args: *Ts) -> None:
        n = _fd(fd)
        self._writers[n] = (callback, args)
        if (loop := self._loop) is not None:
            loop.add_writer(n, self._writable, n, loop)

    def remove_writer(self, fd: Any) -> bool:
        n = _fd(fd)
        if self._writers.pop(n, None) is None:
            return False
        if (loop := self._loop) is not None:
            loop.remove_writer(n)
        return True

    def _readable(self, fd: int, loop: asyncio.AbstractEventLoop) -> None:
        # Ignored when queued on a loop that has handed the host over since:
        # readiness is level-triggered, so the new owner's loop sees it again.
        if loop is self._loop and (entry := self._readers.get(fd)) is not None:
            entry[0](*entry[1])

    def _writable(self, fd: int, loop: asyncio.AbstractEventLoop) -> None:
        if loop is self._loop and (entry := self._writers.get(fd)) is not None:
            entry[0](*entry[1])

    def call_exception_handler(self, context: dict[str, Any]) -> None:
        (self._loop or self._fallback).call_exception_handler(context)

    def defer(self, loop: asyncio.AbstractEventLoop, fn: Callable[[], object]) -> None:
        """On the owning thread: ``fn`` to run on ``loop`` once ``loop`` owns
        the host again (news for a transport of a loop that is not running)."""
        if not loop.is_closed():
            self._deferred.setdefault(loop, []).append(fn)

    # Handover ------------------------------------------------------------------
    def detach(self) -> None:
        """On the owning thread: every registration off its loop; the host is nobody's."""
        with self._lock:
            loop, self._loop, self._owner = self._loop, None, None
            if self._woken is not None:
                self._woken.cancel()
                self._woken = None
        if loop is None:
            return
        for fd in self._readers:
            loop.remove_reader(fd)
        for fd in self._writers:
            loop.remove_writer(fd)
        for timer in self._timers:
            timer._disarm()

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """On ``loop``'s thread: every registration onto ``loop``, which owns the host."""
        # Owner first: were this interrupted half way, a detach still takes
        # every registration off (removing one never made is a no-op).
        with self._lock:
            self._loop, self._owner = loop, threading.get_ident()
            if self._soon:
                self._woken = loop.call_soon(self._drain, loop)
            for fn in self._deferred.pop(loop, ()):
                loop.call_soon(fn)
        for fd in self._readers:
            loop.add_reader(fd, self._readable, fd, loop)
        for fd in self._writers:
            loop.add_writer(fd, self._writable, fd, loop)
        for timer in self._timers:
            timer._arm(loop)


class LoopThread:
    """An asyncio event loop on a daemon thread named ``synack-stack``, and the
    hand-over of the hosts it drives to a program's :class:`HostingLoop`."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()  # the stack thread's own loop
        # Only what the adapters use is implemented; asyncio's other methods
        # (servers, subprocesses, signals...) stay NotImplementedError.
        self.host_loop = HostLoop(self.loop)  # type: ignore[abstract]
        self.closed = False
        self._lock = threading.Lock()
        self._held_by: asyncio.AbstractEventLoop | None = None  # a program loop's
        self._thread = threading.Thread(target=self._run, name="synack-stack", daemon=True)
        self._thread.start()
        self.host_loop._owner = self._thread.ident

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def call(self, fn: Callable[[], T], timeout: float | None = 30.0) -> T:
        """Run ``fn()`` on the thread that owns the hosts and return its result (or raise)."""
        if self.closed:
            raise OSError(errno.EBADF, "the synack stack was shut down")
        if self.host_loop.owned_here():
            return fn()
        fut: concurrent.futures.Future[T] = concurrent.futures.Future()

        def job() -> None:
            try:
                fut.set_result(fn())
            except BaseException as exc:
                fut.set_exception(exc)

        self.host_loop.post_soon(job)
        return fut.result(timeout)

    def post(self, fn: Callable[[], object]) -> None:
        """Run ``fn()`` soon on the owning thread, in order, without waiting
        for it; dropped once the runtime is closed. Posts made before the
        owner gets to them share one wake-up of its loop."""
        if not self.closed:
            self.host_loop.post_soon(fn)

    # Hosting ------------------------------------------------------------------
    def holder(self) -> asyncio.AbstractEventLoop | None:
        """The program loop that holds the hosts (None: the stack thread has them)."""
        return self._held_by

    def hosted_here(self) -> bool:
        """A program loop running in this thread drives the hosts now."""
        return self._held_by is not None and self.host_loop.owned_here()

    def take(self, loop: asyncio.AbstractEventLoop) -> bool:
        """On ``loop``'s thread, before it runs: the hosts move to ``loop``.
        False (nothing moves) if another loop holds them or the runtime is closed."""
        with self._lock:
            if self.closed or self._held_by is not None:
                return False
            self._held_by = loop
        released = threading.Event()

        def let_go() -> None:
            with self._lock:
                if self._held_by is not loop:
                    return  # the taker gave up meanwhile: the stack thread keeps the hosts
                self.host_loop.detach()
                released.set()

        self.loop.call_soon_threadsafe(let_go)
        try:
            while not released.wait(0.5):
                if not self._thread.is_alive():  # closed meanwhile: nobody drives the hosts
                    raise OSError(errno.EBADF, "the synack stack was shut down")
        except BaseException as exc:  # that, or SIGINT while waiting: nothing moves after all
            with self._lock:
                self._held_by = None
                if released.is_set():  # already let go: the stack thread takes them back
                    self.loop.call_soon_threadsafe(self.host_loop.attach, self.loop)
            if isinstance(exc, OSError):
                return False
            raise
        self.host_loop.attach(loop)
        return True

    def give_back(self, loop: asyncio.AbstractEventLoop) -> None:
        """On ``loop``'s thread, once it stopped: the hosts back to the stack thread."""
        if self._held_by is not loop:
            return
        try:
            self.host_loop.detach()
        finally:
            with self._lock:
                self._held_by = None
                # Queued before any later take's let_go: the stack thread's
                # loop runs them in that order.
                self.loop.call_soon_threadsafe(self.host_loop.attach, self.loop)

    @contextlib.contextmanager
    def lent(self) -> Iterator[None]:
        """Around a call that may block on the owning program loop's thread:
        the stack thread drives the hosts meanwhile (the loop cannot)."""
        loop = self._held_by
        if loop is None or not self.host_loop.owned_here():
            yield
            return
        self.give_back(loop)
        try:
            yield
        finally:
            self.take(loop)

    def close(self) -> None:
        """Stop the loop and its thread; ``call`` raises EBADF from now on."""
        if not self.loop.is_running():
            return
        with self._lock:
            self.closed = True
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)


class HostingLoop(asyncio.SelectorEventLoop):
    """asyncio's selector loop, which drives ``runtime``'s hosts while it runs
    (:meth:`LoopThread.take` when it starts, :meth:`LoopThread.give_back`
    when it stops); ``run_until_complete`` runs through ``run_forever``."""

    def __init__(self, runtime: LoopThread) -> None:
        super().__init__()
        self.synack_runtime = runtime
        # Set once this loop's own objects touch the hosts directly
        # (synack.adapters.native): then it runs only while it holds them.
        self.must_hold = False

    def run_forever(self) -> None:
        rt = self.synack_runtime
        took = False  # (a nested run_forever, which asyncio refuses, takes nothing)
        try:
            took = rt.take(self)
            while not took and self.must_hold and not rt.closed and rt.holder() is not self:
                time.sleep(0.005)  # another loop holds the hosts: wait for them
                took = rt.take(self)
            super().run_forever()
        finally:
            if took:
                self.synack_runtime.give_back(self)

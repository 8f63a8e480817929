"""An asyncio loop on a daemon thread, and the two ways to hand it work.

``call(fn)`` runs ``fn()`` on the loop thread and returns its result (or
raises its exception) in the caller's thread; ``post(fn)`` runs it soon, in
order, without waiting, and posts made before the loop gets to them share one
wake-up of the loop. The sans-IO host is only ever touched from that one
thread: synack.adapters.sockets (the blocking socket API) and
synack.adapters.patch (``synack run``) build on this.

Layer: adapters. Imports only the standard library.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import errno
import threading
from collections import deque
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class LoopThread:
    """An asyncio event loop running on a daemon thread named ``synack-stack``."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="synack-stack", daemon=True)
        self._thread.start()
        self.closed = False
        self._posts: deque[Callable[[], object]] = deque()
        self._posted = False

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def call(self, fn: Callable[[], T], timeout: float | None = 30.0) -> T:
        """Run ``fn()`` on the loop thread and return its result (or raise)."""
        if self.closed:
            raise OSError(errno.EBADF, "the synack stack was shut down")
        if threading.current_thread() is self._thread:
            return fn()
        fut: concurrent.futures.Future[T] = concurrent.futures.Future()

        def job() -> None:
            try:
                fut.set_result(fn())
            except BaseException as exc:
                fut.set_exception(exc)

        self.loop.call_soon_threadsafe(job)
        return fut.result(timeout)

    def post(self, fn: Callable[[], object]) -> None:
        """Run ``fn()`` soon on the loop thread, in order, without waiting for
        it; dropped once the runtime is closed. Posts made before the loop
        gets to them share one wake-up of the loop (one write to its self-pipe)."""
        if self.closed:
            return
        self._posts.append(fn)
        if not self._posted:
            self._posted = True
            if threading.current_thread() is self._thread:
                self.loop.call_soon(self._run_posts)
            else:
                self.loop.call_soon_threadsafe(self._run_posts)

    def _run_posts(self) -> None:
        # Cleared before draining: a post appended after this line schedules
        # a new run; one appended before it is drained here.
        self._posted = False
        posts = self._posts
        while posts:
            fn = posts.popleft()
            try:
                fn()
            except Exception as exc:  # one failing post must not strand the rest
                self.loop.call_exception_handler(
                    {"message": "synack post failed", "exception": exc}
                )

    def close(self) -> None:
        """Stop the loop and its thread; ``call`` raises EBADF from now on."""
        if not self.loop.is_running():
            return
        self.closed = True
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)

"""``stack``, the fixture the patch and hosting tests run on: one synack host
(address :data:`tests.adapters.IP`) on a memory hub, installed as the
process's AF_INET sockets (``patch.install``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from synack.adapters import patch
from synack.adapters.sockets import Runtime, SocketModule
from synack.links.memory import MemoryHub
from tests.adapters import IP
from tests.stack.netfix import make_host


@pytest.fixture
def stack() -> Iterator[tuple[Runtime, SocketModule]]:
    rt = Runtime()
    try:
        module = rt.add_host(make_host(1, f"{IP}/24"), MemoryHub().port())
        patch.install(module)
        try:
            yield rt, module
        finally:
            patch.close_all(rt, linger=0.5)
            patch.uninstall()
    finally:
        rt.close()

"""200 concurrent clients exchanging broadcasts: no loss, §2's ordering rules."""

from __future__ import annotations

import asyncio
import random

from synack.apps.chat import ChatConfig, ChatServer

from .helpers import Peer, run_with_server

CLIENTS = 200
PER_CLIENT = 5


def test_200_clients_no_loss_and_ordered() -> None:
    async def body(server: ChatServer, port: int) -> None:
        peers = [await Peer.open(port) for _ in range(CLIENTS)]
        for i, p in enumerate(peers):
            p.send(type="hello", nick=f"u{i}")
        await asyncio.gather(*(p.expect("welcome") for p in peers))
        # Everyone is in: each registration is announced to everyone registered before.
        ready = await asyncio.gather(
            *(
                p.until(lambda m: m["type"] == "joined" and m["nick"] == f"u{CLIENTS - 1}")
                for p in peers[:-1]
            )
        )
        assert all(len(r) == CLIENTS - 1 - i for i, r in enumerate(ready))

        rng = random.Random(7)

        async def talk(i: int, p: Peer) -> None:
            for k in range(PER_CLIENT):
                p.send(type="say", text=f"u{i}:{k}")
                if rng.random() < 0.5:
                    await p.drain()
                    await asyncio.sleep(0)
            await p.drain()

        async def listen(p: Peer) -> list[dict[str, object]]:
            got = []
            while len(got) < CLIENTS * PER_CLIENT:
                m = await p.recv()
                assert m is not None
                if m["type"] == "msg":
                    got.append(m)
            return got

        listeners = [asyncio.create_task(listen(p)) for p in peers]
        await asyncio.gather(*(talk(i, p) for i, p in enumerate(peers)))
        results = await asyncio.gather(*listeners)

        reference = None
        for got in results:
            ids = [m["id"] for m in got]
            assert ids == sorted(ids) and len(set(ids)) == len(ids)  # increasing id order
            per_sender: dict[object, list[int]] = {}
            for m in got:
                who, k = str(m["text"]).split(":")
                assert who == m["from"]
                per_sender.setdefault(who, []).append(int(k))
            # Every message of every sender, in the order that sender sent them.
            assert len(per_sender) == CLIENTS
            assert all(ks == list(range(PER_CLIENT)) for ks in per_sender.values())
            # And the same sequence for everyone (one server-wide order).
            if reference is None:
                reference = ids
            assert ids == reference
        for p in peers:
            p.close()

    server = asyncio.run(run_with_server(body, ChatConfig(rate=0)))
    assert server.stats["messages"] == CLIENTS * PER_CLIENT
    assert server.stats["registered"] == CLIENTS

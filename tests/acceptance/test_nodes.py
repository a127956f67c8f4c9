"""Several hub nodes on one PostgreSQL (DESIGN §6): three real ``wa-hub serve`` processes, 300 sandbox instances.

What is observed, and where:

* ownership: each node's ``GET /nodes?instances=true`` lists the instances it runs; sampled at every
  poll of every phase (on the nodes that answer), the sets are disjoint; once settled they cover every
  instance, spread within ±20 % of a third;
* a node SIGKILLed: its instances are ``ready`` on the other two within the lease TTL + 10 s;
* a node SIGSTOPped past its lease and SIGCONTed: the sandbox delivery log (one file shared by the
  three processes; each line carries the pid of the process whose engine made the call) shows no
  delivery by that process after it was stopped, and no transition is stored after it woke up;
* every item ends ``sent`` (delivered exactly once) or ``uncertain`` (delivered at most once); no
  text is ever delivered twice; nothing stays queued;
* the pacing interval holds per instance across every move, measured on the engine's own
  delivery stamps (``at``) across the processes.

Each node has its own data directory, so a moved sandbox instance links again (automatically) on its
new node, as a whatsmeow instance would need its session to be reachable there (docs/scaling.md).
The automatic link waits 400 ms after the first QR: the QR's own state change is then stored before
the link's (the sandbox emits the two from separate tasks).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.polling import wait_until
from tests.support.server import API_KEY, Server

PG_URL = os.environ.get("WAHUB_TEST_PG_URL")
INSTANCES = 300
TTL_S = 5
INTERVAL_MS = 1500
FIRST, SECOND = 2, 2  # messages per instance before the SIGKILL, and before the SIGSTOP
STAMP_SLACK_MS = 50  # deliveries are stamped a moment after the limiter's instant

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


@pytest.fixture
def database() -> Iterator[str]:
    """An empty PostgreSQL database of its own, dropped afterwards."""
    if not PG_URL:
        if os.environ.get("CI"):
            pytest.fail("CI without WAHUB_TEST_PG_URL", pytrace=False)
        pytest.skip("WAHUB_TEST_PG_URL is not set")
    import asyncpg

    name = f"wahub_nodes_{uuid.uuid4().hex[:10]}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(PG_URL)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    yield PG_URL.rsplit("/", 1)[0] + "/" + name
    asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _query(url: str, sql: str, *args: Any) -> list[Any]:
    import asyncpg

    async def run() -> list[Any]:
        conn = await asyncpg.connect(url)
        try:
            return list(await conn.fetch(sql, *args))
        finally:
            await conn.close()

    return asyncio.run(run())


def _deliveries(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _running(node: Server) -> set[str]:
    resp = node.client.get("/nodes", params={"instances": "true"})
    assert resp.status_code == 200, resp.text
    return set(resp.json()["running"])


def _sample(nodes: list[Server], ids: set[str]) -> dict[str, set[str]]:
    """What each live node runs; asserts no instance runs on two nodes."""
    sets = {n.url: _running(n) for n in nodes}
    seen: Counter[str] = Counter()
    for s in sets.values():
        seen.update(s)
    twice = [i for i, c in seen.items() if c > 1]
    assert not twice, f"instances running on two nodes at once: {twice[:5]}"
    assert set(seen) <= ids
    return sets


def _ready_on(nodes: list[Server], wanted: set[str]) -> bool:
    """Every wanted instance runs on one of ``nodes`` and is ready there; each poll is also a sample of
    ownership (no instance on two of them)."""
    running: set[str] = set().union(*_sample(nodes, wanted).values())
    if not wanted <= running:
        return False
    states = {rt["id"]: rt["state"] for rt in nodes[0].client.get("/instances").json()}
    return all(states.get(i) == "ready" for i in wanted)


def _wait_ready(nodes: list[Server], wanted: set[str], timeout: float) -> None:
    """Wait until every wanted instance is ready on one node; on timeout, say which are not and where."""
    try:
        wait_until(lambda: _ready_on(nodes, wanted), timeout=timeout, interval=0.5)
    except TimeoutError:
        owned = _sample(nodes, wanted)
        states = {rt["id"]: (rt["state"], rt.get("owner")) for rt in nodes[0].client.get("/instances").json()}
        late = {i: states.get(i) for i in sorted(wanted) if states.get(i, ("?",))[0] != "ready"}
        unowned = sorted(wanted - set().union(*owned.values()))
        raise AssertionError(f"not ready after {timeout} s: {len(late)} {dict(list(late.items())[:10])}; "
                             f"unowned {unowned[:10]}; per node {[len(v) for v in owned.values()]}") from None


def _enqueue(nodes: list[Server], ids: list[str], round_: int, per_instance: int) -> dict[str, str]:
    """Enqueue ``per_instance`` messages to every instance, through every node in turn (any node answers)."""
    jobs = [(ids[k], f"r{round_}:{ids[k]}:{m}", nodes[(k + m) % len(nodes)])
            for k in range(len(ids)) for m in range(per_instance)]

    def one(job: tuple[str, str, Server]) -> tuple[str, str]:
        iid, key, node = job
        resp = node.client.post(f"/instances/{iid}/client/action/send-message",
                                json={"chatId": "201000000001@c.us", "message": f"m {key}"},
                                headers={"Idempotency-Key": key})
        assert resp.status_code == 202, resp.text
        return key, iid

    with ThreadPoolExecutor(8) as pool:
        return dict(pool.map(one, jobs))


@pytest.mark.timeout(900)
def test_three_nodes_share_instances_move_them_on_death_and_fence_a_paused_node(
        tmp_path: Path, database: str) -> None:
    log = tmp_path / "deliveries.jsonl"
    env = {"DATABASE_URL": database, "NODE_LEASE_TTL_SECONDS": str(TTL_S), "NODE_CAPACITY": str(INSTANCES),
           "SANDBOX_AUTO_LINK_MS": "400", "SANDBOX_DELIVERY_LOG": str(log), "SANDBOX_AUTO_ACK": "false",
           "SEND_INTERVAL_MS": str(INTERVAL_MS), "SEND_JITTER_MS": "0", "LOG_LEVEL": "warning",
           "MAX_SENDS_PER_MINUTE_PER_INSTANCE": "30", "RESTORE_CONCURRENCY": "50"}
    nodes = [Server(tmp_path / f"node{n}", env={**env, "NODE_ID": f"node{n}"}) for n in range(3)]
    try:
        for node in nodes:
            node.start(timeout=60)
        # 1. 300 instances created through the three nodes in turn; claims spread them.
        ids: list[str] = []
        for k in range(INSTANCES):
            resp = nodes[k % 3].client.post("/instances", json={"name": f"shop-{k:03d}"})
            assert resp.status_code == 200, resp.text
            ids.append(resp.json()["instance"]["id"])
        every = set(ids)
        _wait_ready(nodes, every, timeout=300)  # a loaded CI box: this phase measures nothing
        sets = _sample(nodes, every)
        counts = sorted(len(s) for s in sets.values())
        assert sum(counts) == INSTANCES
        assert all(0.8 * INSTANCES / 3 <= c <= 1.2 * INSTANCES / 3 for c in counts), counts
        listed = nodes[2].client.get("/nodes").json()["nodes"]
        assert sorted(n["owned"] for n in listed) == counts and all(n["live"] for n in listed)
        owner_of = {iid: f"node{n}" for n, node in enumerate(nodes) for iid in sets[node.url]}
        elsewhere = next(iid for iid in ids if owner_of[iid] != "node0")
        status = nodes[0].client.get(f"/instances/{elsewhere}/status")
        assert status.status_code == 200 and status.json()["instance"]["owner"] == owner_of[elsewhere]
        qr = nodes[0].client.get(f"/instances/{elsewhere}/client/qr")  # engine-bound: the owner answers it
        assert qr.status_code == 200 and qr.json()["instanceStatus"] == "ready", qr.text
        code = nodes[0].client.post(f"/instances/{elsewhere}/client/action/request-pairing-code",
                                    json={"phoneNumber": "201000000099"})  # not forwarded: 409 names the owner
        assert code.status_code == 409 and code.json()["owner"] == owner_of[elsewhere], code.text
        assert code.json()["ownerAddress"] == nodes[int(owner_of[elsewhere][-1])].url
        for action, body in (("get-chats", {}), ("send-seen", {"chatId": "201000000001"}),
                             ("get-number-id", {"number": "201000000001"})):  # reads and direct actions too
            refused = nodes[0].client.post(f"/instances/{elsewhere}/client/action/{action}", json=body)
            assert refused.status_code == 409 and refused.json()["owner"] == owner_of[elsewhere], (action,
                                                                                                  refused.text)
        with httpx.Client(base_url=nodes[0].url, timeout=30) as board:
            assert board.post("/dashboard/login", data={"api_key": API_KEY}).status_code == 303
            page = board.get("/dashboard/partials/instances", params={"q": elsewhere}).text
        assert re.search(r'data-testid="node">\s*' + owner_of[elsewhere], page), "the list names the node"
        metrics = nodes[0].client.get("/metrics").text
        assert f'wahub_node_instances_owned{{node="node0"}} {float(len(sets[nodes[0].url]))}' in metrics

        # 2. Work queued everywhere, then SIGKILL node0 while it drains.
        keys = _enqueue(nodes, ids, 1, FIRST)
        wait_until(lambda: len(_deliveries(log)) >= INSTANCES // 2, timeout=60, interval=0.2)
        dead_set = _sample(nodes, every)[nodes[0].url]
        killed_at = time.monotonic()
        nodes[0].kill()
        alive = nodes[1:]
        wait_until(lambda: _ready_on(alive, every), timeout=TTL_S + 30, interval=0.25)
        moved_in_s = time.monotonic() - killed_at
        assert moved_in_s <= TTL_S + 10, f"instances of the dead node ready elsewhere after {moved_in_s:.1f} s"
        print(f"\nnodes: {len(dead_set)} instances of the killed node ready on the others in {moved_in_s:.1f} s")
        sets = _sample(alive, every)
        assert set().union(*sets.values()) == every

        # 3. SIGSTOP node1 with work queued, past its lease; node2 takes everything; SIGCONT node1.
        keys.update(_enqueue(alive, ids, 2, SECOND))
        paused, survivor = nodes[1], nodes[2]
        assert paused.proc is not None
        paused_pid = paused.proc.pid
        os.killpg(paused_pid, signal.SIGSTOP)
        stopped_ms = int(time.time() * 1000)
        try:
            wait_until(lambda: _ready_on([survivor], every), timeout=TTL_S + 60, interval=0.25)
        except TimeoutError:
            missing = sorted(every - _running(survivor))
            states = {rt["id"]: rt["state"] for rt in survivor.client.get("/instances").json()}
            leases = _query(database, "SELECT * FROM leases WHERE instance_id = ANY($1::text[])", missing[:5])
            nodes_now = _query(database, "SELECT * FROM nodes")
            open_tx = _query(database, "SELECT pid, application_name, state, wait_event, xact_start::text, "
                             "left(query, 80) AS query FROM pg_stat_activity WHERE datname = current_database() "
                             "AND xact_start IS NOT NULL AND pid <> pg_backend_pid()")
            raise AssertionError(f"not run by the survivor: {len(missing)} {missing[:5]}; not ready: "
                                 f"{[(i, st) for i, st in states.items() if st != 'ready'][:5]}; leases "
                                 f"{[dict(r) for r in leases]}; nodes {[dict(r) for r in nodes_now]}; "
                                 f"open transactions {[dict(r) for r in open_tx]}; "
                                 f"now {int(time.time() * 1000)}") from None
        finally:
            os.killpg(paused_pid, signal.SIGCONT)
        woke_ms = int(time.time() * 1000)
        print(f"nodes: everything ready on the survivor {(woke_ms - stopped_ms) / 1000:.1f} s after the SIGSTOP")
        # the woken node learns it lost everything and runs nothing (one lease period or two)
        wait_until(lambda: _running(paused) == set(), timeout=30, interval=0.2)
        print(f"nodes: the woken node gave everything up in {time.time() - woke_ms / 1000:.1f} s")
        _sample([paused, survivor], every)

        # 4. Everything drains on the survivor.
        def settled() -> bool:
            rows = _query(database, "SELECT count(*) AS n FROM outbox WHERE status IN ('queued', 'sending')")
            return bool(rows[0]["n"] == 0)

        wait_until(settled, timeout=180, interval=1.0)
        assert _running(survivor) == every

        # 5. A clean stop gives the leases up at once (after in-flight sends), not after the TTL.
        handed_at = int(time.time() * 1000)  # from here on the woken node may rightly take instances back
        survivor.stop()
        # uvicorn re-raises the signal after its graceful shutdown, so the exit status is -SIGTERM
        assert survivor.proc is not None and survivor.proc.returncode in (0, -signal.SIGTERM)
        held = _query(database, "SELECT count(*) AS n FROM leases WHERE owner = 'node2'")
        assert held[0]["n"] == 0

        # 6. The engine's own record.
        deliveries = _deliveries(log)
        texts = Counter(d["text"] for d in deliveries)
        assert [t for t, c in texts.items() if c > 1] == [], "a message went out twice"
        assert set(texts) <= {f"m {k}" for k in keys}
        late = [d for d in deliveries if d["pid"] == paused_pid and stopped_ms <= d["at"] < handed_at]
        assert late == [], f"the paused node sent after losing its leases: {late[:3]}"
        changed = _query(database, "SELECT instance_id, from_state, to_state, reason FROM transitions "
                         "WHERE at >= $1 AND at < $2", woke_ms, handed_at)
        assert [dict(r) for r in changed] == [], "a state changed after the paused node woke up"
        items = _query(database, "SELECT idempotency_key, status, message_id FROM outbox")
        assert len(items) == len(keys)
        by_status = Counter(r["status"] for r in items)
        assert set(by_status) <= {"sent", "uncertain"}, by_status
        delivered_ids = {d["text"][2:]: d["messageId"] for d in deliveries}
        for r in items:
            if r["status"] == "sent":
                assert delivered_ids.get(r["idempotency_key"]) == r["message_id"], r["idempotency_key"]
        print(f"nodes: {len(deliveries)} deliveries, items {dict(by_status)}")
        stamps: dict[str, list[int]] = defaultdict(list)
        for d in deliveries:
            stamps[d["instanceId"]].append(d["at"])
        for iid, ats in stamps.items():
            ats.sort()
            gaps = [b - a for a, b in zip(ats, ats[1:], strict=False)]
            assert all(g >= INTERVAL_MS - STAMP_SLACK_MS for g in gaps), (iid, gaps)
    finally:
        for node in nodes:
            if node.proc is not None and node.proc.poll() is None:
                os.killpg(node.proc.pid, signal.SIGCONT)
            node.stop()
            node.client.close()

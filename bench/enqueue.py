"""Enqueue benchmark: ``send-message`` over HTTP against a running ``wa-hub serve``, as a ratio to a bare app.

For each database (SQLite file, PostgreSQL), each number of records already stored (default 0 and
100,000) and each instance mode (default ``linked`` then ``unlinked``) it:

1. starts ``wa-hub serve`` (sandbox engine, default log level ``info``) on a fresh data directory /
   database, creates the instances ``bench00``..``bench19`` and stops it again;
2. seeds the stored records with direct SQL inserts into the outbox table of the same schema
   (``sent`` items spread over the instances and the last six days);
3. starts the server again; ``linked`` instances link at once (``SANDBOX_AUTO_LINK_MS=0``) and send
   at the default limits while the load runs (the real case), ``unlinked`` ones never send;
4. runs ``wrk`` (one thread, ``--connections`` connections, ``bench/enqueue.lua``) for a warm-up and
   a measured run against the bare reference app (``bench/bare_app.py``: one POST route that parses
   the JSON body and answers 202, same uvicorn/uvloop/httptools setup and GC tuning), then against
   the hub, in the same minute;
5. records throughput, p50/p99 latency, errors, server CPU time per request (``/proc/<pid>/stat``),
   the hub's RSS, the load average, and the hub/bare ratios of throughput, p99 and CPU per request.

Results are printed as a Markdown table and written as JSON (``--out``).

Needs ``wrk`` (Debian: ``apt-get install wrk``). PostgreSQL runs are skipped unless
``--pg-url`` names a server (e.g. one started with ``scripts/pg-start DIR PORT``); each case
gets its own fresh database on it.

Usage::

    .venv/bin/python bench/enqueue.py --pg-url postgresql://wahub@127.0.0.1:54330/postgres
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

API_KEY = "bench-api-key-0123456789"
INSTANCES = 20
HERE = Path(__file__).resolve().parent
LUA = HERE / "enqueue.lua"
TICK_S = 1 / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    """An unused TCP port on 127.0.0.1."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Hub:
    """One ``wa-hub serve`` subprocess."""

    def __init__(self, data_dir: Path, database_url: str | None, extra_env: dict[str, str], *,
                 new_session: bool = False) -> None:
        self.data_dir = data_dir
        self.new_session = new_session  # started in a session of its own (see bench/webhooks.py ServiceHub)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "API_KEY": API_KEY, "DATA_DIR": str(data_dir), "PORT": str(self.port),
                    "HOST": "127.0.0.1", "WAHUB_ENGINE": "sandbox", "LOG_LEVEL": "info",
                    "LOG_FORMAT": "json", "MAX_QUEUE_SIZE": "10000000", "RESTORE_STAGGER_MS": "0",
                    **extra_env}
        if database_url:
            self.env["DATABASE_URL"] = database_url
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start and wait until ``/ready`` answers 200."""
        wa_hub = Path(sys.executable).with_name("wa-hub")
        log = open(self.data_dir / "server.log", "ab")
        self.proc = subprocess.Popen([str(wa_hub), "serve"], env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=self.new_session)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"wa-hub exited: {(self.data_dir / 'server.log').read_text()[-2000:]}")
            try:
                if httpx.get(self.url + "/ready", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise TimeoutError("wa-hub did not become ready")

    def stop(self) -> None:
        """SIGTERM and wait."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def rss_kib(self) -> tuple[int, int]:
        """(current, peak) resident set size of the server process in KiB."""
        assert self.proc is not None
        text = Path(f"/proc/{self.proc.pid}/status").read_text()
        cur = int(re.search(r"VmRSS:\s+(\d+)", text).group(1))  # type: ignore[union-attr]
        peak = int(re.search(r"VmHWM:\s+(\d+)", text).group(1))  # type: ignore[union-attr]
        return cur, peak

    def cpu_s(self) -> float:
        """User + system CPU time of the server process so far (s)."""
        assert self.proc is not None
        return cpu_s(self.proc.pid)

    def wait_linked(self) -> None:
        """Wait until this node runs every instance (PostgreSQL: holds its lease) and each is ``ready``.

        With leases (PostgreSQL) a restarted node runs its instances only once it has claimed them,
        which may take a lease period; until then they are views of the database (an enqueue wakes
        the owner through ``NOTIFY`` and nothing sends), and their stored state may read ``ready``.
        """
        deadline = time.monotonic() + 60
        with httpx.Client(base_url=self.url, headers={"authorization": f"Bearer {API_KEY}"}, timeout=30) as c:
            while True:
                nodes = c.get("/nodes").json()
                if not nodes.get("leases") or sum(n["owned"] for n in nodes["nodes"] if n.get("self")) >= INSTANCES:
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the node did not claim every instance: {nodes}")
                time.sleep(0.2)
            for n in range(INSTANCES):
                while c.get(f"/instances/bench{n:02d}").json()["instance"]["state"] != "ready":
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"bench{n:02d} did not become ready")
                    time.sleep(0.1)

    def create_instances(self) -> None:
        """Create bench00..bench19 (unlinked: they show a QR and never send)."""
        with httpx.Client(base_url=self.url, headers={"authorization": f"Bearer {API_KEY}"}, timeout=30) as c:
            for n in range(INSTANCES):
                r = c.post("/instances", json={"name": f"bench{n:02d}"})
                r.raise_for_status()


class Bare:
    """The bare reference app (``bench/bare_app.py``) as a subprocess."""

    def __init__(self, *, new_session: bool = False) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen([sys.executable, str(HERE / "bare_app.py"), "--port", str(self.port)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=new_session)
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(self.url + "/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("bare app did not start")
            time.sleep(0.1)

    def cpu_s(self) -> float:
        """User + system CPU time of the bare app so far (s)."""
        return cpu_s(self.proc.pid)

    def stop(self) -> None:
        """Terminate and wait."""
        self.proc.terminate()
        self.proc.wait(10)


def cpu_s(pid: int) -> float:
    """User + system CPU time of process ``pid`` (s)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * TICK_S


def loop_cpu_s(pid: int) -> float:
    """User + system CPU time of process ``pid``'s main thread (the event loop's) so far (s)."""
    fields = Path(f"/proc/{pid}/task/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * TICK_S


def _seed_rows(count: int, now_ms: int) -> list[tuple[Any, ...]]:
    rng = random.Random(count)
    rows = []
    for i in range(count):
        at = now_ms - rng.randrange(1, 6 * 86_400_000)
        instance = f"bench{i % INSTANCES:02d}"
        chat = f"2011{i:08d}@c.us"
        payload = json.dumps({"chatId": chat, "message": f"stored message {i}"}, separators=(",", ":"))
        rows.append((uuid.uuid4().hex, instance, f"seed:{i}", "header", "text", chat, payload, "0" * 64, "sent", 1,
                     at, at, at, at, at, f"3EB0{i:016X}", "server"))
    return rows


SEED_COLUMNS = ("queue_id", "instance_id", "idempotency_key", "key_source", "kind", "chat_id", "payload",
                "fingerprint", "status", "attempts", "next_attempt_at", "created_at", "updated_at",
                "handed_over_at", "sent_at", "message_id", "ack")


def seed_sqlite(path: Path, count: int) -> None:
    """Insert ``count`` sent items into the outbox of the SQLite file at ``path``."""
    if not count:
        return
    conn = sqlite3.connect(path)
    cols = ", ".join(SEED_COLUMNS)
    marks = ", ".join("?" for _ in SEED_COLUMNS)
    with conn:
        conn.executemany(f"INSERT INTO outbox ({cols}) VALUES ({marks})", _seed_rows(count, int(time.time() * 1000)))
    conn.execute("ANALYZE")
    conn.close()


async def seed_postgres(url: str, count: int) -> None:
    """Insert ``count`` sent items into the outbox of the PostgreSQL database at ``url``."""
    import asyncpg

    if not count:
        return
    conn = await asyncpg.connect(url)
    try:
        await conn.copy_records_to_table("outbox", records=_seed_rows(count, int(time.time() * 1000)),
                                         columns=list(SEED_COLUMNS))
        await conn.execute("ANALYZE outbox")
    finally:
        await conn.close()


async def fresh_pg_database(admin_url: str, name: str) -> str:
    """Drop and create database ``name`` on the server of ``admin_url``; returns its URL."""
    import asyncpg

    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return admin_url.rsplit("/", 1)[0] + "/" + name


def run_wrk(url: str, mode: str, seconds: int, connections: int, prefix: str) -> dict[str, Any]:
    """One wrk run; returns requests/s, latency percentiles (ms) and error counts."""
    env = {**os.environ, "BENCH_MODE": mode, "BENCH_PREFIX": prefix, "BENCH_INSTANCES": str(INSTANCES),
           "BENCH_API_KEY": API_KEY, "BENCH_REPEAT_KEYS": "1000"}
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(LUA), url]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    line = next(ln for ln in out.splitlines() if ln.startswith("BENCH_RESULT"))
    fields = {k: int(v) for k, v in (kv.split("=") for kv in line.split()[1:])}
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": round(fields["requests"] / (fields["duration_us"] / 1e6), 1), "requests": fields["requests"],
            "p50_ms": fields["p50_us"] / 1000, "p90_ms": fields["p90_us"] / 1000,
            "p99_ms": fields["p99_us"] / 1000, "max_ms": fields["max_us"] / 1000,
            "errors": sum(v for k, v in fields.items() if k.startswith("errors_")),
            "non_2xx": int(non2xx.group(1)) if non2xx else 0}


def measured(target: Any, mode: str, args: argparse.Namespace) -> dict[str, Any]:
    """Warm-up and measured wrk run against ``target`` (a Hub or the Bare app), with its CPU per request.

    ``unique``: the measured run's keys are none of the warm-up's (wrk numbers its requests from 0 in
    each run, so one prefix for both would make the measured run's first requests replays of the
    warm-up's items). ``repeat``: the same keys, which the warm-up created. The measured run's key
    prefix is returned as ``prefix``."""
    prefix = f"{mode}-{uuid.uuid4().hex[:8]}"
    run_wrk(target.url, mode, args.warmup, args.connections, prefix)  # warm-up (creates the repeat keys)
    if mode == "unique":
        prefix = f"{mode}-{uuid.uuid4().hex[:8]}"
    before, loop_before = target.cpu_s(), loop_cpu_s(target.proc.pid)
    res = run_wrk(target.url, mode, args.seconds, args.connections, prefix)
    res["prefix"] = prefix
    n = max(1, res["requests"])
    res["cpu_us_per_req"] = round((target.cpu_s() - before) / n * 1e6)
    # the event loop's thread alone; the rest is the database thread (SQLite) and the others
    res["loop_cpu_us_per_req"] = round((loop_cpu_s(target.proc.pid) - loop_before) / n * 1e6)
    return res


def count_items(data_dir: Path, database_url: str | None, prefix: str) -> int:
    """Outbox items stored under keys of ``prefix`` (a run's requests that made a new item; wrk does not
    count the requests still in flight when it stops, so a ``unique`` run stores at least ``requests``)."""
    like = prefix + ":%"
    if database_url is None:
        with sqlite3.connect(data_dir / "wa-hub.sqlite3") as conn:
            return int(conn.execute("SELECT count(*) FROM outbox WHERE idempotency_key LIKE ?", (like,)).fetchone()[0])

    async def pg() -> int:
        import asyncpg

        conn = await asyncpg.connect(database_url.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            return int(await conn.fetchval("SELECT count(*) FROM outbox WHERE idempotency_key LIKE $1", like))
        finally:
            await conn.close()
    return asyncio.run(pg())


def bench_case(db: str, stored: int, linked: bool, bare: Bare, args: argparse.Namespace,
               workdir: Path) -> list[dict[str, Any]]:
    """Measure each key mode for one database, number of stored records and instance mode."""
    label = "linked" if linked else "unlinked"
    data_dir = workdir / f"{db}-{stored}-{label}"
    data_dir.mkdir(parents=True)
    url = None
    if db == "postgres":
        url = asyncio.run(fresh_pg_database(args.pg_url, f"wahub_bench_{stored}_{label}"))
    extra = {"LOG_LEVEL": args.log_level, **dict(kv.split("=", 1) for kv in args.env)}
    if args.pythonpath:
        extra["PYTHONPATH"] = args.pythonpath
    if linked:
        extra.setdefault("SANDBOX_AUTO_LINK_MS", "0")
    hub = Hub(data_dir, url, extra)
    hub.start()
    hub.create_instances()
    hub.stop()
    started = time.monotonic()
    if db == "sqlite":
        seed_sqlite(data_dir / "wa-hub.sqlite3", stored)
    else:
        assert url is not None
        asyncio.run(seed_postgres(url.replace("postgresql+asyncpg://", "postgresql://"), stored))
    seeded_s = time.monotonic() - started
    hub.start()
    if linked:
        hub.wait_linked()
    results = []
    try:
        for mode in args.keys.split(","):
            ref = measured(bare, mode, args)
            ref.pop("prefix")
            spy = None
            if args.profile:  # py-spy over the hub's warm-up and measured run
                assert hub.proc is not None
                Path(args.profile).mkdir(parents=True, exist_ok=True)
                spy = subprocess.Popen([str(Path(sys.executable).with_name("py-spy")), "record", "--pid",
                                        str(hub.proc.pid), "--format", "raw", "--rate", "200", "--nonblocking",
                                        "--output",
                                        str(Path(args.profile) / f"enqueue-{db}-{stored}-{label}-{mode}.txt")],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            res = measured(hub, mode, args)
            if spy is not None:
                spy.send_signal(signal.SIGINT)
                spy.wait(30)
            res["new_items"] = count_items(data_dir, url, res.pop("prefix"))
            if mode == "unique" and res["new_items"] < res["requests"]:
                raise RuntimeError(f"{res['requests']} requests with new keys stored only {res['new_items']} items")
            rss, peak = hub.rss_kib()
            row = {"db": db, "stored": stored, "instances": label, "keys": mode, **res,
                   "bare": ref, "ratio_rps": round(res["rps"] / ref["rps"], 3),
                   "ratio_p99": round(res["p99_ms"] / max(ref["p99_ms"], 0.001), 2),
                   "ratio_cpu": round(ref["cpu_us_per_req"] / max(1, res["cpu_us_per_req"]), 3),
                   "load1": round(os.getloadavg()[0], 2), "rss_mib": round(rss / 1024, 1),
                   "peak_rss_mib": round(peak / 1024, 1), "seed_s": round(seeded_s, 1)}
            print(json.dumps(row), flush=True)
            results.append(row)
    finally:
        hub.stop()
    return results


def machine() -> dict[str, Any]:
    """nproc, CPU model, Python and platform of this machine."""
    model = "unknown"
    with open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {"nproc": os.cpu_count(), "cpu": model, "python": platform.python_version(),
            "platform": platform.platform()}


def table(rows: list[dict[str, Any]]) -> str:
    """The results as a Markdown table (hub figures, the bare app's beside them, and the ratios)."""
    head = ("| database | stored | instances | keys | hub req/s | bare req/s | ratio | hub p99 ms | bare p99 ms "
            "| p99 ratio | hub CPU µs/req | bare CPU µs/req | CPU ratio (bare/hub) | errors / non-2xx | load1 "
            "| RSS MiB |\n|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    lines = [head]
    for r in rows:
        b = r["bare"]
        lines.append(f"| {r['db']} | {r['stored']:,} | {r['instances']} | {r['keys']} | {r['rps']:,.0f} | "
                     f"{b['rps']:,.0f} | {r['ratio_rps']:.2f} | {r['p99_ms']:.1f} | {b['p99_ms']:.1f} | "
                     f"{r['ratio_p99']:.1f} | {r['cpu_us_per_req']:,} | {b['cpu_us_per_req']:,} | "
                     f"{r['ratio_cpu']:.2f} | {r['errors']} / {r['non_2xx']} | {r['load1']} | {r['rss_mib']:.0f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stored", default="0,100000", help="comma-separated record counts to pre-store")
    parser.add_argument("--instances", default="linked,unlinked",
                        help="linked (sending, the real case), unlinked (never send), or both")
    parser.add_argument("--keys", default="unique", help="unique (new items), repeat (replays), or both")
    parser.add_argument("--log-level", default="info", help="the server's LOG_LEVEL (default: its own default)")
    parser.add_argument("--db", default="sqlite,postgres", help="sqlite, postgres or both")
    parser.add_argument("--pg-url", default=None, help="admin URL of a PostgreSQL server (postgres database)")
    parser.add_argument("--seconds", type=int, default=10, help="measured run length (s)")
    parser.add_argument("--warmup", type=int, default=3, help="warm-up run length (s)")
    parser.add_argument("--connections", type=int, default=16, help="concurrent connections of wrk")
    parser.add_argument("--pythonpath", default=None, help="run the hub from this source tree (e.g. older code)")
    parser.add_argument("--env", action="append", default=[], help="extra server env VAR=VALUE (repeatable)")
    parser.add_argument("--profile", default=None, help="directory for py-spy profiles of the hub (raw stacks)")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk not found (Debian: apt-get install wrk)")
    dbs = [d for d in args.db.split(",") if d]
    if "postgres" in dbs and not args.pg_url:
        print("no --pg-url: skipping PostgreSQL", file=sys.stderr)
        dbs.remove("postgres")
    rows: list[dict[str, Any]] = []
    bare = Bare()
    try:
        with tempfile.TemporaryDirectory(prefix="wahub-bench-") as tmp:
            for db in dbs:
                for stored in (int(s) for s in args.stored.split(",")):
                    for mode in args.instances.split(","):
                        rows.extend(bench_case(db, stored, mode == "linked", bare, args, Path(tmp)))
    finally:
        bare.stop()
    info = machine()
    print(f"\nmachine: nproc={info['nproc']} cpu={info['cpu']} python={info['python']}")
    print(table(rows))
    if args.out:
        Path(args.out).write_text(json.dumps({"machine": info, "results": rows}, indent=2))


if __name__ == "__main__":
    main()

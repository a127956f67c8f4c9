"""Webhook delivery: throughput to fast loopback receivers as a ratio to a bare client, and latency.

Throughput cases (default: 100 instances to **one** receiver URL, and 100 instances to **100**
receivers):

1. a receiver process (this file with ``--serve``) listens on the receivers' ports and answers every
   POST with ``200`` and an empty body at once (keep-alive);
2. ``wa-hub serve`` (sandbox engine, SQLite, default log level, ``WEBHOOK_SECRET`` set so every
   event is signed) creates the instances with their webhook URLs and stops;
3. ``--events`` pending ``message`` events per instance (a 0.4 KB body each) are inserted into
   ``webhook_events`` directly;
4. the **bare reference** (this file with ``--bare``: one Python process with a minimal asyncio
   HTTP/1.1 keep-alive client, no database, no signing) posts the same number of bodies to the same
   receivers with the same number of requests in flight per receiver; its events/s and CPU are the
   machine's capacity for this traffic in the same minute;
5. the hub starts again; its dispatcher delivers every pending event (one lane per instance, in
   order; ``WEBHOOK_MAX_IN_FLIGHT_PER_URL`` per receiver, default 2). The run ends when none is
   pending. Events per second come from the hub's own ``delivered_at`` stamps (first to last), hub
   CPU from ``/proc/<pid>/stat`` (the whole run less the CPU of a start with nothing to deliver, measured
   just before, because delivery starts before ``/ready`` answers) divided by that stretch. The ratio
   is hub events/s ÷ bare events/s.

Latency case (``--latency-rate``, default 100 messages/s for ``--latency-seconds``): 10 linked
sandbox instances, each with a webhook to one receiver; the bench injects inbound messages through
the sandbox API at the given rate (round-robin over the instances), each carrying its injection
instant; the receiver notes when the ``message`` event arrived. Latency = arrival − injection. The
same injector first posts at the same rate to the bare app (``bench/bare_app.py``); its request
latency is the machine's own floor in the same minute (the ratio's reference). The dispatcher's own
part, from the event's ``created_at`` (stored with the inbound message) to its arrival, is reported
beside it (``stored_to_arrival``; both clocks are this machine's wall clock).

Side by side (``--side-by-side TREE,TREE``, ``.`` for this code): the latency case for several hubs
at once (e.g. this code and an older tree from ``git archive``), each with its own receiver and
injector process, beside a third injector posting to the bare app: all see the same machine load,
which on a shared machine moves too much between minutes for runs one after another to compare.

Usage: ``.venv/bin/python bench/webhooks.py`` (``--profile DIR`` writes py-spy profiles
of the hub, ``--cases`` picks ``throughput``, ``latency`` or both)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
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

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.enqueue import API_KEY, Bare, Hub, cpu_s, machine  # noqa: E402

_OK = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"
_MARK = b"lat:"
LATENCY_INSTANCES = 10


class _Answer(asyncio.Protocol):
    """Answers each complete request (head + content-length body) with 200 at once."""

    arrivals: list[tuple[float, str, float]] = []  # (ms from injection to arrival, event id, arrival epoch ms)

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.buf = b""

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            head_end = self.buf.find(b"\r\n\r\n")
            if head_end < 0:
                return
            length = 0
            for line in self.buf[:head_end].split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip())
            end = head_end + 4 + length
            if len(self.buf) < end:
                return
            at = self.buf.find(_MARK, head_end, end)
            if at >= 0:
                now_ns = time.time_ns()
                stop = self.buf.find(b'"', at)
                sent_ns = int(self.buf[at + len(_MARK):stop])
                id_at = self.buf.find(b"webhook-id:", 0, head_end)
                event_id = self.buf[id_at + 11:self.buf.find(b"\r\n", id_at)].strip().decode()
                _Answer.arrivals.append(((now_ns - sent_ns) / 1e6, event_id, now_ns / 1e6))
            self.buf = self.buf[end:]
            self.transport.write(_OK)


class ServiceHub(Hub):
    """A ``wa-hub serve`` started in a session of its own, as a service manager (systemd, a container
    runtime) starts it, unless ``SAME_SESSION`` is set.

    Why: Linux schedules sessions (autogroups) fairly against each other before it schedules the
    processes inside one. In the bench's own session the hub shared one session's CPU share with
    the injectors, the receiver and the bare app, so on a machine shared with other busy sessions its
    threads waited in the run queue for hundreds of ms (``/proc/<pid>/task/<tid>/schedstat``), a
    condition a deployed server does not have.
    """

    def __init__(self, data_dir: Path, database_url: str | None, extra_env: dict[str, str]) -> None:  # noqa: D107
        super().__init__(data_dir, database_url, extra_env, new_session=not SAME_SESSION)


class ServiceBare(Bare):
    """The bare app in a session of its own, like :class:`ServiceHub` (unless ``SAME_SESSION``)."""

    def __init__(self) -> None:  # noqa: D107 - as Bare, with its own session
        super().__init__(new_session=not SAME_SESSION)


SAME_SESSION = False  # --same-session: hubs and the bare app share the bench's session (as before)


def serve(count: int, notes: str | None) -> None:
    """Run ``count`` receivers (ports printed as JSON) until SIGTERM; then write the latency marks to ``notes``."""
    async def run() -> None:
        loop = asyncio.get_running_loop()
        ports = []
        for _ in range(count):  # the kernel picks distinct free ports
            server = await loop.create_server(_Answer, "127.0.0.1", 0)
            ports.append(server.sockets[0].getsockname()[1])
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        print(json.dumps(ports), flush=True)
        await stop.wait()

    _run(run())
    if notes:
        Path(notes).write_text(json.dumps(_Answer.arrivals))


def _run(coro: Any) -> None:
    try:
        import uvloop
        uvloop.run(coro)
    except ImportError:
        asyncio.run(coro)


def bare(ports: list[int], count: int, in_flight: int, out: str) -> None:
    """The reference: post ``count`` bodies spread over ``ports``, ``in_flight`` keep-alive connections each."""
    payload = body("hook000", 1).encode()

    async def conn(port: int, n: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        head = (f"POST /hook HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\ncontent-type: application/json\r\n"
                f"content-length: {len(payload)}\r\n\r\n").encode()
        for _ in range(n):
            writer.write(head + payload)
            line = await reader.readuntil(b"\r\n\r\n")
            assert line.startswith(b"HTTP/1.1 200"), line
        writer.close()

    figures: dict[str, Any] = {}

    async def run() -> None:
        lanes = [(port, k) for port in ports for k in range(in_flight)]
        share, extra = divmod(count, len(lanes))
        cpu0, t0 = cpu_s(os.getpid()), time.monotonic()
        await asyncio.gather(*(conn(port, share + (1 if i < extra else 0)) for i, (port, _) in enumerate(lanes)))
        wall, cpu = time.monotonic() - t0, cpu_s(os.getpid()) - cpu0
        figures.update(events_per_s=round(count / wall), cpu_pct=round(100 * cpu / wall, 1),
                       cpu_us_per_event=round(cpu / count * 1e6))

    _run(run())
    Path(out).write_text(json.dumps(figures))


def body(instance_id: str, n: int) -> str:
    """A ``message`` event body of about 0.4 KB."""
    return json.dumps({"event": "message", "instanceId": instance_id, "data": {"message": {
        "from": "201000000001", "body": f"inbound message number {n} with some text", "type": "chat",
        "timestamp": 1767225600 + n, "id": f"3EB0{n:016X}", "chatId": "201000000001@c.us",
        "fromId": "201000000001@s.whatsapp.net", "pushName": "Bench"}}, "timestamp": 1767225600 + n},
        separators=(",", ":"))


class Receivers:
    """The receiver process (``--serve``) on ``count`` ports."""

    def __init__(self, count: int, notes: Path | None = None) -> None:
        cmd = [sys.executable, __file__, "--serve", str(count)]
        if notes is not None:
            cmd += ["--notes", str(notes)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        self.ports: list[int] = json.loads(self.proc.stdout.readline())

    def stop(self) -> None:
        """SIGTERM (the receiver writes its notes) and wait."""
        self.proc.terminate()
        self.proc.wait(10)


def run_bare(ports: list[int], count: int, in_flight: int, workdir: Path) -> dict[str, Any]:
    """The bare reference client as a subprocess; its figures."""
    out = workdir / "bare.json"
    subprocess.run([sys.executable, __file__, "--bare", ",".join(map(str, ports)), "--count", str(count),
                    "--in-flight", str(in_flight), "--bare-out", str(out)], check=True, timeout=300)
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def profiler(pid: int, path: Path | None) -> subprocess.Popen[bytes] | None:
    """py-spy recording ``pid`` into ``path`` (collapsed stacks), when asked."""
    if path is None:
        return None
    spy = Path(sys.executable).with_name("py-spy")
    return subprocess.Popen([str(spy), "record", "--pid", str(pid), "--format", "raw", "--rate", "200",
                             "--output", str(path), "--nonblocking"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def stop_profiler(proc: subprocess.Popen[bytes] | None) -> None:
    """End a py-spy recording (it writes its file on SIGINT)."""
    if proc is not None:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)


PYTHONPATH: dict[str, str] = {}  # {"PYTHONPATH": tree} with --pythonpath: the hub runs that (older) code


def hub_env(extra: dict[str, str]) -> dict[str, str]:
    """The hub's environment for these runs."""
    return {"LOG_LEVEL": "info", "WEBHOOK_SECRET": "whsec_" + "YmVuY2gtc2VjcmV0LWJlbmNoLXNlY3JldA==",
            **PYTHONPATH, **extra}


def case(receivers: int, instances: int, events: int, workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """One throughput run: ``instances`` instances spread over ``receivers`` receiver URLs."""
    rx = Receivers(receivers)
    data = workdir / f"rx{receivers}"
    data.mkdir()
    hub = Hub(data, None, hub_env({}))
    try:
        hub.start()
        with httpx.Client(base_url=hub.url, headers={"authorization": f"Bearer {API_KEY}"}, timeout=30) as c:
            for n in range(instances):
                url = f"http://127.0.0.1:{rx.ports[n % receivers]}/hook"
                c.post("/instances", json={"name": f"hook{n:03d}", "webhook": {"url": url, "events": ["message"]}}
                       ).raise_for_status()
        hub.stop()
        hub.start()  # the CPU of a start with nothing to deliver, subtracted below
        idle_start_cpu = hub.cpu_s()
        hub.stop()
        db = data / "wa-hub.sqlite3"
        conn = sqlite3.connect(db)
        with conn:
            now = int(time.time() * 1000)
            conn.executemany(
                "INSERT INTO webhook_events (event_id, instance_id, event, body, status, attempts, next_attempt_at,"
                " created_at) VALUES (?, ?, 'message', ?, 'pending', 0, ?, ?)",
                [(f"evt_{uuid.uuid4().hex}", f"hook{n:03d}", body(f"hook{n:03d}", k), now, now)
                 for k in range(events) for n in range(instances)])
        conn.close()
        load_before = os.getloadavg()[0]
        ref = run_bare(rx.ports, instances * events, args.in_flight, workdir)
        hub.start()
        assert hub.proc is not None
        spy = profiler(hub.proc.pid, Path(args.profile) / f"webhooks-rx{receivers}.txt" if args.profile else None)
        cpu0, t0 = idle_start_cpu, time.monotonic()  # delivery starts before /ready: count from the start
        ro = f"file:{db}?mode=ro"
        while True:
            c2 = sqlite3.connect(ro, uri=True, timeout=30)
            pending = c2.execute("SELECT count(*) FROM webhook_events WHERE status = 'pending'").fetchone()[0]
            c2.close()
            if pending == 0 or time.monotonic() - t0 > 300:
                break
            time.sleep(0.1)
        cpu, wall = hub.cpu_s() - cpu0, time.monotonic() - t0
        stop_profiler(spy)
        c2 = sqlite3.connect(ro, uri=True, timeout=30)
        first, last, delivered = c2.execute(
            "SELECT min(delivered_at), max(delivered_at), count(*) FROM webhook_events "
            "WHERE status = 'delivered' AND event = 'message'").fetchone()
        c2.close()
        hub.stop()
    finally:
        hub.stop()
        rx.stop()
    span_s = max(0.001, (last - first) / 1000) if delivered else float("nan")
    rate = round(delivered / span_s)
    return {"case": "throughput", "receivers": receivers, "instances": instances, "events": instances * events,
            "delivered": delivered, "events_per_s": rate, "bare_events_per_s": ref["events_per_s"],
            "ratio": round(rate / ref["events_per_s"], 3), "hub_cpu_pct": round(100 * cpu / span_s, 1),
            "cpu_us_per_event": round(cpu / max(1, delivered) * 1e6), "bare_cpu_us_per_event": ref["cpu_us_per_event"],
            "wall_s": round(wall, 1), "load1_before": round(load_before, 2),
            "load1_after": round(os.getloadavg()[0], 2)}


async def inject(url: str, rate: float, seconds: float, path: str = "/sandbox/instances/lat{n:02d}/messages",
                 errors: dict[str, int] | None = None) -> list[float]:
    """Post inbound messages at ``rate`` per second for ``seconds``; the injection calls' own latencies (ms).

    A minimal HTTP/1.1 keep-alive client (up to 64 connections; a call waits for a free one), so
    that the injector's own CPU stays small beside the hub's on a loaded machine. A call that fails
    (an error status or a transport error) is counted in ``errors`` by its status or error class,
    and left out of the latencies.
    """
    host, port = url.removeprefix("http://").split(":")
    calls: list[float] = []
    failed = errors if errors is not None else {}
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    slots = asyncio.Semaphore(64)
    tasks: set[asyncio.Task[None]] = set()

    async def one(n: int) -> None:
        async with slots:
            t0 = time.time_ns()
            body = json.dumps({"from": "201000000001", "text": f"lat:{t0}", "messageId": f"3EB0LAT{n:012d}"}).encode()
            head = (f"POST {path.format(n=n % LATENCY_INSTANCES)} HTTP/1.1\r\nhost: {host}:{port}\r\n"
                    f"authorization: Bearer {API_KEY}\r\ncontent-type: application/json\r\n"
                    f"content-length: {len(body)}\r\n\r\n").encode()
            try:
                reused = bool(idle)
                reader, writer = idle.pop() if idle else await asyncio.open_connection(host, int(port))
                writer.write(head + body)
                try:
                    answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
                except (asyncio.IncompleteReadError, ConnectionResetError) as exc:
                    if not reused or getattr(exc, "partial", b""):
                        raise
                    writer.close()  # the server closed a kept-alive connection: once more on a new one
                    reader, writer = await asyncio.open_connection(host, int(port))
                    writer.write(head + body)
                    answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
                length = 0
                for line in answer.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value.strip())
                await reader.readexactly(length)
            except (TimeoutError, OSError, asyncio.IncompleteReadError) as exc:
                failed[type(exc).__name__] = failed.get(type(exc).__name__, 0) + 1
                return
            idle.append((reader, writer))
            status = int(answer.split(b" ", 2)[1])
            if status >= 400:
                failed[str(status)] = failed.get(str(status), 0) + 1
                return
            calls.append((time.time_ns() - t0) / 1e6)

    start, n = time.monotonic(), 0
    while time.monotonic() - start < seconds:
        due = start + n / rate
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        task = asyncio.ensure_future(one(n))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        n += 1
    if tasks:
        await asyncio.gather(*tasks)
    for _, writer in idle:
        writer.close()
    return calls


def pct(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values``, nearest rank."""
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)


def latency_hub(workdir: Path, name: str, env: dict[str, str]) -> tuple[Hub, Receivers, Path]:
    """A started hub with 10 linked instances whose ``message`` webhooks go to one receiver (noting arrivals)."""
    notes = workdir / f"notes-{name}.json"
    rx = Receivers(1, notes)
    data = workdir / f"latency-{name}"
    data.mkdir()
    hub = ServiceHub(data, None, {**hub_env({"SANDBOX_AUTO_LINK_MS": "0"}), **env})
    try:
        hub.start()
        with httpx.Client(base_url=hub.url, headers={"authorization": f"Bearer {API_KEY}"}, timeout=30) as c:
            for n in range(LATENCY_INSTANCES):
                c.post("/instances", json={"name": f"lat{n:02d}", "webhook": {
                    "url": f"http://127.0.0.1:{rx.ports[0]}/hook", "events": ["message"]}}).raise_for_status()
            deadline = time.monotonic() + 60
            for n in range(LATENCY_INSTANCES):
                while c.get(f"/instances/lat{n:02d}").json()["instance"]["state"] != "ready":
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"lat{n:02d} did not become ready")
                    time.sleep(0.1)
    except BaseException:
        hub.stop()
        rx.stop()
        raise
    return hub, rx, notes


def latency_figures(data: Path, notes: Path, calls: list[float], errors: dict[str, int]) -> dict[str, Any]:
    """Arrival latencies noted by the receiver, the dispatcher's part (from ``created_at``) and the calls'."""
    notes_seen = json.loads(notes.read_text())
    seen = [lat for lat, _, _ in notes_seen]
    c2 = sqlite3.connect(f"file:{data / 'wa-hub.sqlite3'}?mode=ro", uri=True, timeout=30)
    stored = dict(c2.execute("SELECT event_id, created_at FROM webhook_events WHERE event = 'message'").fetchall())
    c2.close()
    dispatch = [arrived - stored[eid] for _, eid, arrived in notes_seen if eid in stored]
    return {"injected": len(calls), "inject_errors": errors, "arrived": len(seen),
            "p50_ms": pct(seen, 0.5), "p99_ms": pct(seen, 0.99), "max_ms": round(max(seen), 1),
            "stored_to_arrival_p50_ms": pct(dispatch, 0.5), "stored_to_arrival_p99_ms": pct(dispatch, 0.99),
            "inject_call_p50_ms": pct(calls, 0.5), "inject_call_p99_ms": pct(calls, 0.99)}


def injector(url: str, rate: float, seconds: float, path: str, workdir: Path, name: str,
             start_at: float) -> tuple[subprocess.Popen[bytes], Path]:
    """This file with ``--inject`` as a subprocess: posts from ``start_at`` (epoch s); calls noted in a file."""
    out = workdir / f"calls-{name}.json"
    proc = subprocess.Popen([sys.executable, __file__, "--inject", url, "--inject-path", path, "--latency-rate",
                             str(rate), "--latency-seconds", str(seconds), "--start-at", str(start_at),
                             "--bare-out", str(out)])
    return proc, out


def side_by_side(rate: float, seconds: float, workdir: Path, trees: list[str]) -> list[dict[str, Any]]:
    """Every hub in ``trees`` (a source tree for ``PYTHONPATH``, ``.`` for this code) and the bare app get
    their inbound messages at the same time, each from its own injector process: one machine load for all."""
    hubs: list[tuple[str, Hub, Receivers, Path]] = []
    bare_app = ServiceBare()
    try:
        for k, tree in enumerate(trees):
            env = {} if tree == "." else {"PYTHONPATH": tree}
            hubs.append((f"{k}", *latency_hub(workdir, f"{k}", env)))
        load_before = os.getloadavg()[0]
        start_at = time.time() + 2.0
        runs = [injector(hub.url, rate, seconds, "/sandbox/instances/lat{n:02d}/messages", workdir, name, start_at)
                for name, hub, _, _ in hubs]
        runs.append(injector(bare_app.url, rate, seconds, "/instances/b{n:02d}/client/action/send-message",
                             workdir, "bare", start_at))
        cpu0 = [hub.cpu_s() for _, hub, _, _ in hubs]
        for proc, _ in runs:
            proc.wait(seconds + 120)
        time.sleep(1.0)  # the last events in flight
        cpu = [hub.cpu_s() - c0 for (_, hub, _, _), c0 in zip(hubs, cpu0, strict=True)]
        load_after = os.getloadavg()[0]
    finally:
        for _, hub, rx, _ in hubs:
            hub.stop()
            rx.stop()
        bare_app.stop()
    bare_calls, _ = json.loads(runs[-1][1].read_text())
    rows = []
    for (_, hub, _, notes), (_, out), tree, used in zip(hubs, runs, trees, cpu, strict=False):
        calls, errors = json.loads(out.read_text())
        row = {"case": "latency-side-by-side", "tree": tree, "rate": rate, "seconds": seconds,
               **latency_figures(hub.data_dir, notes, calls, errors),
               "bare_call_p50_ms": pct(bare_calls, 0.5), "bare_call_p99_ms": pct(bare_calls, 0.99),
               "hub_cpu_pct": round(100 * used / (seconds + 1), 1),
               "load1_before": round(load_before, 2), "load1_after": round(load_after, 2)}
        row["p99_ratio_to_bare_call"] = round(row["p99_ms"] / max(0.1, row["bare_call_p99_ms"]), 2)
        rows.append(row)
    return rows


def latency_case(rate: float, seconds: float, workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Inbound message → webhook arrival at ``rate`` messages/s over 10 linked instances."""
    hub, rx, notes = latency_hub(workdir, "one", {})
    data = hub.data_dir
    try:
        load_before = os.getloadavg()[0]
        bare_app = ServiceBare()  # the same injector against the bare app, just before: the machine's own latency
        try:
            bare_path = "/instances/b{n:02d}/client/action/send-message"
            bare_calls = asyncio.run(inject(bare_app.url, rate, seconds, bare_path))
        finally:
            bare_app.stop()
        assert hub.proc is not None
        spy = profiler(hub.proc.pid, Path(args.profile) / "webhooks-latency.txt" if args.profile else None)
        cpu0, t0 = hub.cpu_s(), time.monotonic()
        errors: dict[str, int] = {}
        calls = asyncio.run(inject(hub.url, rate, seconds, errors=errors))
        time.sleep(1.0)  # the last events in flight
        cpu, wall = hub.cpu_s() - cpu0, time.monotonic() - t0
        stop_profiler(spy)
    finally:
        hub.stop()
        rx.stop()
    row = {"case": "latency", "rate": rate, "seconds": seconds, **latency_figures(data, notes, calls, errors),
           "bare_call_p50_ms": pct(bare_calls, 0.5), "bare_call_p99_ms": pct(bare_calls, 0.99),
           "hub_cpu_pct": round(100 * cpu / wall, 1), "load1_before": round(load_before, 2),
           "load1_after": round(os.getloadavg()[0], 2)}
    row["p99_ratio_to_bare_call"] = round(row["p99_ms"] / max(0.1, row["bare_call_p99_ms"]), 2)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--serve", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--notes", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--bare", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--bare-out", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--in-flight", type=int, default=2, help="requests in flight per receiver (as the hub's "
                                                                  "WEBHOOK_MAX_IN_FLIGHT_PER_URL default)")
    parser.add_argument("--instances", type=int, default=100)
    parser.add_argument("--events", type=int, default=200, help="pending events per instance")
    parser.add_argument("--receivers", default="1,100", help="comma-separated receiver counts, one run each")
    parser.add_argument("--cases", default="throughput,latency")
    parser.add_argument("--latency-rate", type=float, default=100.0, help="inbound messages per second")
    parser.add_argument("--latency-seconds", type=float, default=20.0)
    parser.add_argument("--inject", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--inject-path", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--start-at", type=float, default=0.0, help=argparse.SUPPRESS)
    parser.add_argument("--side-by-side", default=None,
                        help="comma-separated source trees ('.' = this code): the latency case for each hub at once, "
                             "beside the bare app, one injector process each")
    parser.add_argument("--same-session", action="store_true",
                        help="latency cases: run the hubs and the bare app in the bench's session (see ServiceHub)")
    parser.add_argument("--profile", default=None, help="directory for py-spy profiles of the hub")
    parser.add_argument("--pythonpath", default=None, help="run the hub from this source tree (e.g. older code)")
    parser.add_argument("--workdir", default=None, help="where the data directories go (default: a temp dir)")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    if args.serve:
        serve(int(args.serve), args.notes)
        return
    if args.bare:
        bare([int(p) for p in args.bare.split(",")], args.count, args.in_flight, args.bare_out)
        return
    if args.inject:
        time.sleep(max(0.0, args.start_at - time.time()))
        errors: dict[str, int] = {}
        calls: list[float] = []

        async def run() -> None:
            calls.extend(await inject(args.inject, args.latency_rate, args.latency_seconds, args.inject_path, errors))
        _run(run())
        Path(args.bare_out).write_text(json.dumps([calls, errors]))
        return
    global SAME_SESSION
    SAME_SESSION = args.same_session
    if args.profile:
        Path(args.profile).mkdir(parents=True, exist_ok=True)
    if args.pythonpath:
        PYTHONPATH["PYTHONPATH"] = args.pythonpath
    rows = []
    cases = args.cases.split(",")
    with tempfile.TemporaryDirectory(prefix="wahub-hooks-", dir=args.workdir) as tmp:
        if args.side_by_side:
            cases = []
            for row in side_by_side(args.latency_rate, args.latency_seconds, Path(tmp), args.side_by_side.split(",")):
                print(json.dumps(row), flush=True)
                rows.append(row)
        if "throughput" in cases:
            for receivers in (int(r) for r in args.receivers.split(",")):
                row = case(receivers, args.instances, args.events, Path(tmp), args)
                print(json.dumps(row), flush=True)
                rows.append(row)
        if "latency" in cases:
            row = latency_case(args.latency_rate, args.latency_seconds, Path(tmp), args)
            print(json.dumps(row), flush=True)
            rows.append(row)
    print(json.dumps({"machine": machine()}))
    if args.out:
        Path(args.out).write_text(json.dumps({"machine": machine(), "results": rows}, indent=2))


if __name__ == "__main__":
    main()

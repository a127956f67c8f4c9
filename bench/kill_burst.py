"""Stop the hub (SIGTERM or SIGKILL) in the middle of a send burst, restart it, let it drain, and
check every queued message was delivered exactly once (or is `uncertain`).

Setup as wa-hub's bench/sends.py: sandbox engine, SQLite, limits raised, --instances instances with
--per-instance messages each to one number (--same-number), restarted with SANDBOX_AUTO_LINK_MS=0
and RESTORE_STAGGER_MS=0 so every instance links at once.

What reached "WhatsApp" is read from the sandbox's durable delivery log (SANDBOX_DELIVERY_LOG, one
fsynced JSON line per accepted send, with the pid of the hub process that sent it; kept on /dev/shm
so the fsync costs nothing), because the in-memory /sandbox/instances/{id}/sent does not survive a
SIGKILL. /sent of the restarted hub is fetched too and cross-checked against the log lines of that
process.

The stop is triggered by watching the delivery log: when the number of deliveries reaches
(burst - 1) * instances + --at-count (e.g. burst 2, at 500 -> after 1,500 deliveries, i.e. half-way
through the second round of sends). --at-count 0 with --before-ms N stops N ms before the burst's
expected start (previous burst's first delivery + interval) instead.

Runs, data and results live under ``$KILL_BURST_WORKDIR`` (default ``/tmp/wahub-kill-burst``). Figures and the
commands of one series: ``docs/PERFORMANCE.md``, "What a stop in the middle of a burst leaves".

Usage:
  .venv/bin/python bench/kill_burst.py --template  # once: populate a data dir
  .venv/bin/python bench/kill_burst.py --label term50 --signal TERM --at-count 500
  .venv/bin/python bench/kill_burst.py --label kill50 --signal KILL --at-count 500 [--env SEND_CLAIM_LEAD_MS=0]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import shutil
import signal
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.enqueue import API_KEY, Hub  # noqa: E402
from bench.sends import populate  # noqa: E402

HERE = Path(os.environ.get("KILL_BURST_WORKDIR", "/tmp/wahub-kill-burst"))
TEMPLATE = HERE / "template"


def base_env(interval_ms: int) -> dict[str, str]:
    """The hub's settings for the run: limits raised, ``interval_ms`` between sends, no engine latency."""
    return {"MAX_SENDS_PER_MINUTE_PER_INSTANCE": "60", "MAX_SENDS_PER_HOUR_PER_INSTANCE": "3600",
            "SEND_INTERVAL_MS": str(interval_ms), "SANDBOX_SEND_LATENCY_MS": "0", "SANDBOX_AUTO_ACK": "false",
            "MAX_QUEUE_SIZE": "100000", "SANDBOX_QR_REFRESH_MS": "3600000"}


def ro(db: Path) -> sqlite3.Connection:
    """The hub's SQLite file, opened read-only."""
    return sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)


def statuses(db: Path) -> dict[str, int]:
    """Outbox items by status, plus ``sending_handed_over`` (sending items already handed over)."""
    conn = ro(db)
    try:
        out = dict(conn.execute("SELECT status, count(*) FROM outbox GROUP BY status").fetchall())
        out["sending_handed_over"] = conn.execute(
            "SELECT count(*) FROM outbox WHERE status='sending' AND handed_over_at IS NOT NULL").fetchone()[0]
        return out
    finally:
        conn.close()


def pending(db: Path) -> int:
    """Open (queued or sending) items."""
    conn = ro(db)
    try:
        return int(conn.execute("SELECT count(*) FROM outbox WHERE status IN ('queued','sending')").fetchone()[0])
    finally:
        conn.close()


def make_webhook_template(args: argparse.Namespace) -> None:
    """A copy of the template whose instances post message_uncertain to the receiver (--webhook-port)."""
    dst = HERE / "template-wh"
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(TEMPLATE, dst)
    hub = Hub(dst, None, base_env(args.interval_ms))
    hub.start()
    try:
        with httpx.Client(base_url=hub.url, headers={"authorization": f"Bearer {API_KEY}"}, timeout=30) as c:
            for n in range(args.instances):
                r = c.put(f"/instances/fleet{n:04d}", json={"webhook": {
                    "url": f"http://127.0.0.1:{args.webhook_port}/hook", "events": ["message_uncertain"]}})
                r.raise_for_status()
    finally:
        hub.stop()
    (dst / "server.log").unlink(missing_ok=True)
    print("template-wh ready", flush=True)


def make_template(args: argparse.Namespace) -> None:
    """Create the instances and queue their messages once, into the template data dir (hub stopped after)."""
    if TEMPLATE.exists():
        shutil.rmtree(TEMPLATE)
    TEMPLATE.mkdir(parents=True)
    hub = Hub(TEMPLATE, None, base_env(args.interval_ms))
    hub.start()
    t = time.monotonic()
    try:
        asyncio.run(populate(hub.url, args.instances, args.per_instance, new_numbers=False))
    finally:
        hub.stop()
    print(f"template: {args.instances} instances x {args.per_instance} queued in {time.monotonic() - t:.0f} s; "
          f"statuses {statuses(TEMPLATE / 'wa-hub.sqlite3')}", flush=True)
    (TEMPLATE / "server.log").unlink(missing_ok=True)


async def fetch_sent(url: str, ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    """The sandbox's in-memory deliveries (``/sandbox/instances/{id}/sent``) per instance id."""
    headers = {"authorization": f"Bearer {API_KEY}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as c:
        sem = asyncio.Semaphore(16)

        async def one(iid: str) -> tuple[str, list[dict[str, Any]]]:
            async with sem:
                r = await c.get(f"/sandbox/instances/{iid}/sent")
                r.raise_for_status()
                return iid, r.json()["messages"]

        return dict(await asyncio.gather(*(one(i) for i in ids)))


class LogWatch:
    """Incremental reader of the delivery log: count and the 'at' stamps seen so far."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fh: Any = None
        self.buf = b""
        self.count = 0
        self.per_instance: collections.Counter[str] = collections.Counter()
        self.first_of_round: dict[int, int] = {}  # round (1-based per instance) -> earliest 'at'

    def poll(self) -> int:
        """Read what the log gained since the last poll; the number of deliveries seen so far."""
        if self.fh is None:
            if not self.path.exists():
                return 0
            self.fh = open(self.path, "rb")
        data = self.fh.read()
        if data:
            self.buf += data
            *lines, self.buf = self.buf.split(b"\n")
            for ln in lines:
                d = json.loads(ln)
                self.count += 1
                self.per_instance[d["instanceId"]] += 1
                r = self.per_instance[d["instanceId"]]
                if r not in self.first_of_round or d["at"] < self.first_of_round[r]:
                    self.first_of_round[r] = d["at"]
        return self.count


def run(args: argparse.Namespace) -> dict[str, Any]:
    """One run: copy the template, start the hub, signal it at the chosen point, restart, drain, analyse."""
    label = args.label
    data = HERE / "runs" / label
    if data.exists():
        shutil.rmtree(data)
    shutil.copytree(HERE / args.source, data)
    dlog = Path(f"/dev/shm/burst-{label}.jsonl")
    dlog.unlink(missing_ok=True)
    db = data / "wa-hub.sqlite3"
    env = {**base_env(args.interval_ms), "SANDBOX_AUTO_LINK_MS": "0", "RESTORE_STAGGER_MS": "0",
           "SANDBOX_DELIVERY_LOG": str(dlog), **dict(kv.split("=", 1) for kv in args.env)}
    hub = Hub(data, None, env)
    result: dict[str, Any] = {"label": label, "signal": args.signal, "burst": args.burst, "at_count": args.at_count,
                              "before_ms": args.before_ms, "env": args.env}
    try:
        hub.start()
        assert hub.proc is not None
        pid1 = hub.proc.pid
        watch = LogWatch(dlog)
        target = (args.burst - 1) * args.instances + args.at_count
        deadline = time.monotonic() + 120
        while True:
            n = watch.poll()
            if args.at_count > 0 and n >= target:
                break
            if args.at_count == 0 and args.burst - 1 in watch.first_of_round and \
                    n >= (args.burst - 1) * args.instances * 0.9:
                when = watch.first_of_round[args.burst - 1] + args.interval_ms - args.before_ms
                if time.time() * 1000 >= when:
                    break
            if time.monotonic() > deadline:
                raise TimeoutError(f"burst not reached: {n} deliveries")
            time.sleep(0.002)
        stop_ms = int(time.time() * 1000)
        sig = signal.SIGKILL if args.signal == "KILL" else signal.SIGTERM
        hub.proc.send_signal(sig)
        t = time.monotonic()
        try:
            rc = hub.proc.wait(60)
        except Exception:
            hub.proc.kill()
            rc = hub.proc.wait(10)
            result["fault_stop_timeout"] = True
        result["stop_wait_s"] = round(time.monotonic() - t, 2)
        result["exit_code"] = rc
        watch.poll()
        result["delivered_at_stop_signal"] = n
        result["delivered_run1"] = watch.count
        result["stop_ms"] = stop_ms
        result["status_after_stop"] = statuses(db)
        # restart
        t = time.monotonic()
        try:
            hub.start()
        except Exception as e:  # noqa: BLE001
            result["fault_restart"] = repr(e)
            raise
        result["restart_ready_s"] = round(time.monotonic() - t, 1)
        pid2 = hub.proc.pid
        deadline = time.monotonic() + args.timeout
        while pending(db) > 0:
            if time.monotonic() > deadline:
                result["fault_drain_timeout"] = pending(db)
                break
            time.sleep(0.5)
        result["drain_s"] = round(time.monotonic() - t, 1)
        time.sleep(1 + args.linger)
        ids = [f"fleet{n:04d}" for n in range(args.instances)]
        sent2 = asyncio.run(fetch_sent(hub.url, ids))
        hub.stop()
        result["exit_code_2"] = hub.proc.returncode
    finally:
        if hub.proc is not None and hub.proc.poll() is None:
            hub.proc.kill()
            hub.proc.wait(10)
    result["status_final"] = statuses(db)
    result.update(analyse(db, dlog, sent2, pid1, pid2, stop_ms, args))
    log_tail = (data / "server.log").read_text(errors="replace")
    errs = [ln for ln in log_tail.splitlines() if '"level": "error"' in ln or '"level":"error"' in ln
            or "Traceback" in ln]
    result["server_log_errors"] = len(errs)
    result["shutdown_lines"] = [ln[:300] for ln in log_tail.splitlines()
                                if "shutdown_drained" in ln or "recover" in ln.lower() or "uncertain" in ln][:6]
    if errs:
        (HERE / "results" / f"{label}.errors.log").write_text("\n".join(errs[:200]))
    if not args.keep:
        shutil.rmtree(data, ignore_errors=True)
        dlog.unlink(missing_ok=True)
    return result


def analyse(db: Path, dlog: Path, sent2: dict[str, list[dict[str, Any]]], pid1: int, pid2: int, stop_ms: int,
            args: argparse.Namespace) -> dict[str, Any]:
    """Every queued message against the delivery log: duplicates, lost, uncertain (delivered or not), gaps."""
    deliveries = [json.loads(ln) for ln in dlog.read_text().splitlines() if ln.strip()]
    by_item: dict[tuple[str, str], list[dict[str, Any]]] = collections.defaultdict(list)
    by_mid: dict[str, dict[str, Any]] = {}
    for d in deliveries:
        by_item[(d["instanceId"], d["text"])].append(d)
        by_mid[d["messageId"]] = d
    conn = ro(db)
    rows = conn.execute("SELECT instance_id, idempotency_key, status, chosen_message_id, message_id, "
                        "uncertain_reported_at, handed_over_at, sent_at, chat_id FROM outbox").fetchall()
    try:
        unc_events = conn.execute("SELECT count(*) FROM webhook_events WHERE event='message_uncertain'").fetchone()[0]
        ev_kinds = {f"{e}/{st}": c for e, st, c in conn.execute(
            "SELECT event, status, count(*) FROM webhook_events GROUP BY event, status").fetchall()}
    except sqlite3.Error as e:
        unc_events, ev_kinds = None, {"error": str(e)}
    conn.close()
    queued = set()
    dup, lost, unc, unc_deliv, unc_never, unc_unreported, wrong_chat = [], [], [], [], [], [], []
    sent_not_delivered, delivered_not_sent = [], []
    for iid, key, status, chosen, _mid, rep, hov, _sat, chat in rows:
        n, k = key[1:].split("-")
        text = f"m{int(k)}"
        queued.add((iid, text))
        ds = by_item.get((iid, text), [])
        if len(ds) > 1:
            dup.append((iid, text, [(d["pid"], d["at"], d["messageId"]) for d in ds]))
        if any(d["chatId"] != chat for d in ds):
            wrong_chat.append((iid, text))
        if status == "uncertain":
            unc.append((iid, text))
            if rep is None:
                unc_unreported.append((iid, text))
            if ds:
                unc_deliv.append((iid, text, chosen, [d["messageId"] for d in ds], ds[0]["at"] - stop_ms))
            else:
                unc_never.append((iid, text, hov - stop_ms if hov else None))
        elif status == "sent":
            if not ds:
                sent_not_delivered.append((iid, text))
        else:
            if not ds:
                lost.append((iid, text, status))
        if ds and status not in ("sent", "uncertain"):
            delivered_not_sent.append((iid, text, status))
    extra = [k for k in by_item if k not in queued]
    # cross-check /sent of the restarted hub with the log lines of its pid
    log2 = collections.Counter(d["instanceId"] for d in deliveries if d["pid"] == pid2)
    api2 = {i: len(v) for i, v in sent2.items()}
    mismatch = sum(1 for i in api2 if api2[i] != log2.get(i, 0))
    per_inst = collections.Counter(collections.Counter(d["instanceId"] for d in deliveries).values())
    # burst geometry: per round the span of first deliveries of that round (process 1 only)
    rounds: dict[int, list[int]] = collections.defaultdict(list)
    seen: collections.Counter[str] = collections.Counter()
    for d in sorted((d for d in deliveries if d["pid"] == pid1), key=lambda d: d["at"]):
        seen[d["instanceId"]] += 1
        rounds[seen[d["instanceId"]]].append(d["at"])
    geom = {r: {"n": len(v), "start_rel_ms": v[0] - stop_ms, "span_ms": v[-1] - v[0]} for r, v in rounds.items()}
    per: dict[str, list[int]] = collections.defaultdict(list)
    for d in deliveries:
        per[d["instanceId"]].append(d["at"])
    gaps = [b - a for v in per.values() for a, b in zip(sorted(v), sorted(v)[1:], strict=False)]
    after = [d["at"] - stop_ms for d in deliveries if d["pid"] == pid1 and d["at"] > stop_ms]
    return {
        "queued_items": len(rows), "deliveries_total": len(deliveries),
        "deliveries_run1": sum(1 for d in deliveries if d["pid"] == pid1),
        "deliveries_run2": sum(1 for d in deliveries if d["pid"] == pid2),
        "deliveries_per_instance_hist": dict(sorted(per_inst.items())),
        "sandbox_sent_api_run2": sum(api2.values()), "sent_api_vs_log_mismatch_instances": mismatch,
        "duplicates": len(dup), "duplicate_examples": dup[:5],
        "lost": len(lost), "lost_examples": lost[:5],
        "uncertain": len(unc), "uncertain_delivered_before_stop": len(unc_deliv),
        "uncertain_never_delivered": len(unc_never), "uncertain_unreported": len(unc_unreported),
        "uncertain_delivered_examples": unc_deliv[:5],
        "uncertain_never_handover_rel_stop_ms": sorted(x[2] for x in unc_never if x[2] is not None)[:3]
        + sorted(x[2] for x in unc_never if x[2] is not None)[-3:],
        "message_uncertain_events": unc_events, "events_by_kind": ev_kinds,
        "sent_but_not_delivered": len(sent_not_delivered),
        "delivered_but_not_sent_or_uncertain": len(delivered_not_sent),
        "deliveries_not_queued": len(extra), "wrong_chat": len(wrong_chat),
        "rounds_run1_rel_stop": geom,
        "min_gap_ms": min(gaps, default=None), "gaps_below_interval": sum(1 for g in gaps if g < args.interval_ms),
        "run1_deliveries_after_signal": len(after), "run1_last_delivery_rel_ms": max(after, default=None),
    }


def main() -> None:
    """Parse the options; build a template or do one run and write its results as JSON."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--template", action="store_true", help="create the instances and their queue once")
    p.add_argument("--instances", type=int, default=1000)
    p.add_argument("--per-instance", type=int, default=4)
    p.add_argument("--interval-ms", type=int, default=5000)
    p.add_argument("--label", default="run", help="the run's name (results/LABEL.json)")
    p.add_argument("--signal", choices=["TERM", "KILL"], default="TERM", help="how the hub is stopped")
    p.add_argument("--burst", type=int, default=2, help="which round of sends to stop in (1-based)")
    p.add_argument("--at-count", type=int, default=500, help="stop after this many deliveries of that burst")
    p.add_argument("--before-ms", type=int, default=0, help="with --at-count 0: stop this long before the burst")
    p.add_argument("--timeout", type=int, default=120, help="drain timeout after restart (s)")
    p.add_argument("--env", action="append", default=[], help="extra hub setting VAR=VALUE (repeatable)")
    p.add_argument("--keep", action="store_true", help="keep the run's data dir and delivery log")
    p.add_argument("--source", default="template", help="template dir under the work dir to copy")
    p.add_argument("--template-webhook", action="store_true",
                   help="make template-wh: instances with a webhook URL on 127.0.0.1:--webhook-port "
                        "(run any HTTP receiver there to see message_uncertain)")
    p.add_argument("--webhook-port", type=int, default=18931, help="loopback port of that receiver")
    p.add_argument("--linger", type=float, default=0, help="extra seconds after the drain before the final stop")
    args = p.parse_args()
    if args.template:
        make_template(args)
        return
    if args.template_webhook:
        make_webhook_template(args)
        return
    (HERE / "results").mkdir(parents=True, exist_ok=True)
    t = time.monotonic()
    res = run(args)
    res["wall_s"] = round(time.monotonic() - t, 1)
    res["load1"] = os.getloadavg()[0]
    (HERE / "results" / f"{args.label}.json").write_text(json.dumps(res, indent=2))
    print(json.dumps(res, indent=2), flush=True)


if __name__ == "__main__":
    main()

"""Offline neonize 0.5.2 calls, each run in a subprocess so a Go panic cannot take pytest down.

Nothing connects: the client is never asked to ``connect`` and, where ``unshare -n`` works, the
subprocess runs in an empty network namespace as well.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from wahub.engines import base
from wahub.engines.whatsmeow import protocol

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]

SCRIPT = textwrap.dedent("""
    import json, os, sys
    os.environ["NEONIZE_BOT_TAG"] = "off"
    out_path, db = sys.argv[1], sys.argv[2]
    import neonize._binder as nb
    nb.gocode.DecryptPollVote.errcheck = nb.consume_bytes_struct
    from neonize.client import NewClient
    from neonize.utils.enum import VoteType, ChatPresence, ChatPresenceMedia
    from neonize.utils.jid import build_jid
    from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import Message
    from tests.support import neonize_fixtures as fx
    from wahub.engines.whatsmeow import adapter

    result = {}
    client = NewClient(db, uuid="smoke")
    poll = client.build_poll_vote_creation("Lunch?", ["Pizza", "Sushi"], VoteType.SINGLE)
    result["poll"] = {"name": poll.pollCreationMessage.name,
                      "options": [o.optionName for o in poll.pollCreationMessage.options],
                      "selectable": poll.pollCreationMessage.selectableOptionsCount,
                      "secret_len": len(poll.messageContextInfo.messageSecret)}
    result["ids"] = [client.generate_message_id(), client.generate_message_id()]
    result["is_connected"] = bool(client.is_connected)

    def failure(fn):
        try:
            fn()
        except Exception as exc:
            return [type(exc).__name__, str(exc)]
        return None

    to = build_jid("15551234567")
    result["send"] = failure(lambda: client.send_message(to, Message(conversation="hi")))
    from wahub.engines.whatsmeow.workerio import send_raw
    raw = send_raw(client, to, Message(conversation="hi"))  # the Go answer itself, error and response
    result["raw"] = [raw.Error, raw.SendResponse.ID]
    result["presence"] = failure(lambda: client.send_chat_presence(
        to, ChatPresence.CHAT_PRESENCE_COMPOSING, ChatPresenceMedia.CHAT_PRESENCE_MEDIA_TEXT))
    result["on_whatsapp"] = failure(lambda: client.is_on_whatsapp("+15551234567"))
    result["logout"] = failure(client.logout)
    result["pair"] = failure(lambda: client.PairPhone("15551234567", True))
    result["decrypt"] = failure(lambda: client.decrypt_poll_vote(fx.poll_update_ev))
    client.disconnect()
    client.stop()
    try:
        client.send_message(to, Message(conversation="hi"))
    except Exception as exc:
        err = adapter.send_error(exc)
        result["mapped"] = [type(err).__name__, err.reason]
    result["db_created"] = os.path.exists(db)
    with open(out_path, "w") as fh:
        json.dump(result, fh)
""")


@functools.cache
def no_network_prefix() -> tuple[str, ...]:
    """``unshare -n`` when this machine allows it (an empty network namespace), else nothing."""
    probe = ["unshare", "-n", "true"]
    if shutil.which("unshare") and subprocess.run(probe, capture_output=True).returncode == 0:
        return ("unshare", "-n")
    return ()


def run_isolated(args: list[str], **kwargs: object) -> subprocess.CompletedProcess[bytes]:
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root), "NEONIZE_BOT_TAG": "off"}
    return subprocess.run([*no_network_prefix(), *args], cwd=root, env=env, capture_output=True,
                          timeout=90, **kwargs)  # type: ignore[call-overload, no-any-return]


def test_offline_calls_fail_cleanly(tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    proc = run_isolated([sys.executable, "-c", SCRIPT, str(out), str(tmp_path / "smoke.sqlite3")])
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    result = json.loads(out.read_text())
    assert result["poll"] == {"name": "Lunch?", "options": ["Pizza", "Sushi"], "selectable": 1,
                              "secret_len": 32}
    first, second = result["ids"]
    assert first != second and len(first) >= 16 and first.isalnum()
    assert result["is_connected"] is False
    assert result["send"] == ["SendMessageError", "client is nil"]
    assert result["raw"] == ["client is nil", ""]  # neonize's Go SendMessage called directly works the same
    assert result["presence"][0] == "SendPresenceError"
    assert result["on_whatsapp"][0] == "IsOnWhatsAppError"
    assert result["logout"][0] == "LogoutError"
    assert result["pair"][0] == "PairPhoneError"
    assert result["decrypt"][0] == "DecryptPollVoteError"  # with the errcheck fix; TypeError without it
    assert result["mapped"] == ["DisconnectedError", "not_connected"]
    assert result["db_created"] is False  # the session database appears only on connect


def test_real_worker_speaks_the_protocol_without_connecting(tmp_path: Path) -> None:
    commands = b"".join(protocol.encode(protocol.command(i, cmd, args)) for i, cmd, args in [
        (1, "status", {}),
        (2, "send_text", {"chat_id": "15551234567@c.us", "text": "hi"}),
        (3, "fake", {"action": "scan"}),
    ])
    worker = [sys.executable, "-m", "wahub.engines.whatsmeow.worker", "--session", str(tmp_path / "s"),
              "--instance", "smoke", "--log-level", "warning"]
    proc = run_isolated(worker, input=commands)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    lines = [protocol.decode(line) for line in proc.stdout.splitlines()]  # nothing else reached stdout
    assert lines[0]["type"] == "hello" and lines[0]["version"] == protocol.VERSION
    assert lines[0]["client"] == "neonize"
    replies = {m["id"]: m for m in lines if m["type"] == "reply"}
    assert replies[1] == protocol.reply_ok(1, {"connected": False, "linked": False})
    assert replies[2]["error"]["kind"] == "disconnected"
    assert replies[3]["error"]["kind"] == "engine"
    # the worker's own log is JSON lines only (the hub re-emits them), without neonize's ffmpeg warning
    log_lines = proc.stderr.decode().splitlines()
    assert all(isinstance(json.loads(line).get("event"), str) for line in log_lines), log_lines
    assert not [line for line in log_lines if "ffmpeg" in line]


def test_real_worker_reports_whatsapp_unreachable_as_connect_failed(tmp_path: Path) -> None:
    """No network at all: neonize's connect fails on the DNS lookup and the worker says so, with the reason."""
    if not no_network_prefix():
        pytest.skip("needs `unshare -n`: without an empty network namespace connect would reach WhatsApp")
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root), "NEONIZE_BOT_TAG": "off"}
    worker = [*no_network_prefix(), sys.executable, "-m", "wahub.engines.whatsmeow.worker",
              "--session", str(tmp_path / "s"), "--instance", "offline", "--log-level", "warning"]
    with subprocess.Popen(worker, cwd=root, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE) as proc:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(protocol.encode(protocol.command(1, "connect", {})))
        proc.stdin.flush()
        events = []
        for line in proc.stdout:  # the per-test timeout bounds this loop
            message = protocol.decode(line)
            if message["type"] == "event":
                events.append(protocol.event_from_wire(message))
                if isinstance(events[-1], base.ConnectFailed):
                    break
        proc.stdin.close()
        proc.wait(timeout=30)
    failed = events[-1]
    assert isinstance(failed, base.ConnectFailed), events
    assert failed.reason in ("dns", "network") and "web.whatsapp.com" in failed.detail
    assert not [e for e in events if isinstance(e, base.Disconnected)]
    # whatsmeow created its database on connect; with no device row it is not a stored login
    from wahub.engines.whatsmeow.workerio import stored_login

    assert (tmp_path / "s" / "whatsmeow.sqlite3").exists() and not stored_login(tmp_path / "s")

"""The operator commands drive a running hub over its HTTP API."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.server import API_KEY, Server


def wa_hub(server: Server, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "WAHUB_URL": server.url, "API_KEY": API_KEY}
    return subprocess.run([sys.executable, "-m", "wahub.cli", *args], env=env, capture_output=True, text=True,
                          input=stdin, timeout=60)


@pytest.mark.timeout(120)
def test_instances_and_send_commands(tmp_path: Path) -> None:
    with Server(tmp_path / "hub", env={"SANDBOX_AUTO_LINK_MS": "0", "SEND_INTERVAL_MS": "0"}) as hub:
        out = wa_hub(hub, "instances", "create", "cli.shop", "--webhook-url", "http://127.0.0.1:9/hook",
                     "--event", "vote_update")
        assert out.returncode == 0, out.stderr
        assert '"id": "cli_shop"' in out.stdout
        hub.wait_until(lambda: hub.client.get("/instances/cli_shop/client/status").json()["clientStatus"]
                       ["instanceStatus"] == "ready")

        listed = wa_hub(hub, "instances", "list")
        assert listed.returncode == 0
        assert listed.stdout.startswith("cli_shop\tready\t")

        sent = wa_hub(hub, "send", "cli_shop", "+20 100 000 0001", "hello from the CLI", "--key", "cli-1")
        assert sent.returncode == 0, sent.stderr
        assert '"queueId"' in sent.stdout
        poll = wa_hub(hub, "send", "cli_shop", "201000000001", "Confirm?", "--poll", "Yes", "--poll", "No")
        assert poll.returncode == 0, poll.stderr
        piped = wa_hub(hub, "send", "cli_shop", "201000000001", stdin="from stdin\n")
        assert piped.returncode == 0, piped.stderr

        msgs = hub.wait_until(lambda: len(m := hub.client.get("/sandbox/instances/cli_shop/sent").json()
                                          ["messages"]) == 3 and m)
        assert [m["kind"] for m in msgs] == ["text", "poll", "text"]
        assert msgs[0]["text"] == "hello from the CLI"

        bad = wa_hub(hub, "send", "cli_shop", "not-a-number", "x")
        assert bad.returncode != 0
        assert "chatId" in bad.stderr

        gone = wa_hub(hub, "instances", "delete", "cli_shop")
        assert gone.returncode == 0
        assert wa_hub(hub, "instances", "list").stdout == ""
        missing = wa_hub(hub, "instances", "delete", "cli_shop")
        assert missing.returncode != 0
        assert "no instance cli_shop" in missing.stderr


def test_commands_say_when_the_hub_is_unreachable() -> None:
    env = {**os.environ, "WAHUB_URL": "http://127.0.0.1:9", "API_KEY": API_KEY}
    out = subprocess.run([sys.executable, "-m", "wahub.cli", "instances", "list"], env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode != 0
    assert "cannot reach wa-hub" in out.stderr

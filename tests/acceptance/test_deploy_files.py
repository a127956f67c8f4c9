"""The deployment files hold what they promise, proven without a container daemon.

* The Dockerfile is parsed with ``dockerfile-parse`` and checked against explicit rules (slim Python
  3.11 base, no downloads outside the package registries, a non-root user, one volume that is the
  data directory, a health check on ``/ready``, exec-form command, no secret baked in).
* The image's command and environment are run here as the image's own unprivileged uid, with the
  source tree read-only to it and only the data directory writable; ``/ready`` answers and the
  image's HEALTHCHECK command passes (and fails once the hub is gone).
* ``docker-compose.yml`` is validated against the Compose Specification's JSON schema (the copy
  shipped in the ``check-jsonschema`` package) plus the topology rules of docs/deploy.md.
* ``deploy/wa-hub.service`` passes ``systemd-analyze verify`` without a warning.
"""

from __future__ import annotations

import importlib.resources
import io
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
import yaml
from dockerfile_parse import DockerfileParser

from tests.support import polling
from tests.support.server import API_KEY, free_port

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def dockerfile() -> DockerfileParser:
    return DockerfileParser(fileobj=io.BytesIO((ROOT / "Dockerfile").read_bytes()))


def _final_stage(parser: DockerfileParser) -> list[dict[str, Any]]:
    instructions = parser.structure
    last_from = max(i for i, ins in enumerate(instructions) if ins["instruction"] == "FROM")
    return instructions[last_from:]


def _env(parser: DockerfileParser) -> dict[str, str]:
    """ENV of the final stage (dockerfile-parse resolves ``$PATH``-style references as far as it can)."""
    return dict(parser.envs)


def test_dockerfile_follows_the_rules(dockerfile: DockerfileParser) -> None:
    ins = dockerfile.structure
    froms = [i["value"].split()[0] for i in ins if i["instruction"] == "FROM"]
    assert froms and all(re.fullmatch(r"python:3\.11-slim(-\w+)?", f) for f in froms), froms
    for i in ins:
        value = i["value"]
        assert i["instruction"] != "ADD", "use COPY; ADD can fetch URLs"
        if i["instruction"] == "RUN":
            assert not re.search(r"\b(curl|wget|git\s+clone)\b|https?://", value), f"download: {value}"
            if "apt-get install" in value:
                assert "--no-install-recommends" in value and "rm -rf /var/lib/apt/lists" in value
            if "pip install" in value:
                assert "--no-cache-dir" in value
        if i["instruction"] == "ENV":
            assert not re.search(r"API_KEY|PASSWORD|SECRET|TOKEN", value), "no secret baked into the image"
    final = _final_stage(dockerfile)
    kinds = [i["instruction"] for i in final]
    users = [i["value"] for i in final if i["instruction"] == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root"), "runs as root"
    assert kinds.index("USER") < kinds.index("CMD")
    volumes = [json.loads(i["value"]) for i in final if i["instruction"] == "VOLUME"]
    assert volumes == [[_env(dockerfile)["DATA_DIR"]]], "exactly one volume, the data directory"
    health = [i["value"] for i in final if i["instruction"] == "HEALTHCHECK"]
    assert len(health) == 1 and "/ready" in health[0]
    cmd = [i["value"] for i in final if i["instruction"] == "CMD"]
    assert len(cmd) == 1 and json.loads(cmd[0])[:2] == ["wa-hub", "serve"], "exec form"
    assert _env(dockerfile)["HOST"] == "0.0.0.0"  # reachable through the published port


def test_dockerignore_sends_only_what_the_image_needs() -> None:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    assert "*" in lines  # everything excluded (.venv, data/, .git) ...
    for copied in ("pyproject.toml", "README.md", "src/"):  # ... except what the Dockerfile copies
        assert f"!{copied}" in lines
        assert (ROOT / copied).exists()


def _image_command(parser: DockerfileParser) -> tuple[list[str], list[str], str]:
    final = _final_stage(parser)
    cmd = json.loads([i["value"] for i in final if i["instruction"] == "CMD"][-1])
    health_line = [i["value"] for i in final if i["instruction"] == "HEALTHCHECK"][-1]
    health = json.loads(health_line[health_line.index("CMD") + 3:].strip())
    user = [i["value"] for i in final if i["instruction"] == "USER"][-1]
    return cmd, health, user


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """A directory outside pytest's root-only tmp tree, so the image's uid can reach it."""
    base = Path(tempfile.mkdtemp(prefix="wahub-image-"))
    base.chmod(0o755)
    try:
        yield base / "data"
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.skipif(shutil.which("setpriv") is None or os.geteuid() != 0, reason="needs root to switch users")
@pytest.mark.timeout(120)
def test_the_image_command_runs_as_its_user_with_only_the_data_dir_writable(dockerfile: DockerfileParser,
                                                                            data_dir: Path) -> None:
    cmd, health, user = _image_command(dockerfile)
    uid, _, gid = user.partition(":")
    env = _env(dockerfile)
    data_dir.mkdir()
    os.chown(data_dir, int(uid), int(gid or uid))
    port = free_port()
    # The image's environment, with its paths mapped onto this checkout: /opt/wa-hub is this venv,
    # the volume is data_dir; the port is a free one and, in a test, only loopback is listened on.
    run_env = {k: v.replace("/opt/wa-hub/bin", str(VENV_BIN)).replace("$PATH", os.environ["PATH"])
               for k, v in env.items()}
    run_env.update(DATA_DIR=str(data_dir), PORT=str(port), HOST="127.0.0.1", API_KEY=API_KEY)
    assert not os.access(ROOT, os.W_OK) or os.geteuid() == 0  # (root can write anywhere; the uid below cannot)
    as_user = [shutil.which("setpriv") or "setpriv", f"--reuid={uid}", f"--regid={gid or uid}", "--clear-groups"]
    log_path = data_dir.parent / "hub.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([*as_user, *cmd], env=run_env, cwd=data_dir, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        def ready() -> bool:
            assert proc.poll() is None, log_path.read_text()
            try:
                return httpx.get(f"http://127.0.0.1:{port}/ready", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        polling.wait_until(ready, timeout=60)
        status = Path(f"/proc/{proc.pid}/status").read_text()
        assert re.search(rf"^Uid:\s+{uid}\s", status, re.M), "the hub runs as the image's user"
        # everything it wrote is in the data directory, owned by that user
        written = {p.name for p in data_dir.iterdir()}
        assert {"wa-hub.sqlite3", "wa-hub.lock"} <= written
        assert all(p.stat().st_uid == int(uid) for p in data_dir.iterdir())
        # and it cannot write anywhere in the application tree
        probe = subprocess.run([*as_user, sys.executable, "-c", f"open({str(ROOT / 'probe')!r}, 'w')"],
                               capture_output=True, text=True, env=run_env, timeout=30)
        assert probe.returncode != 0 and "Permission denied" in probe.stderr
        check = subprocess.run([*as_user, *health], env=run_env, capture_output=True, text=True, timeout=30)
        assert check.returncode == 0, check.stderr
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(20)
    after = subprocess.run([*as_user, *health], env=run_env, capture_output=True, text=True, timeout=30)
    assert after.returncode != 0, "the health check must fail when the hub is gone"


def _compose_schema() -> dict[str, Any]:
    ref = importlib.resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    return dict(json.loads(ref.read_text(encoding="utf-8")))


def test_compose_file_is_valid_against_the_compose_specification() -> None:
    doc = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    schema = _compose_schema()
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.path))
    assert not errors, [f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors]
    # the schema is strict enough to catch a typo
    broken = {**doc, "services": {**doc["services"], "hub": {**doc["services"]["hub"], "restart_policy": "x"}}}
    assert list(validator.iter_errors(broken))


def test_compose_topology() -> None:
    doc = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    hub, db = doc["services"]["hub"], doc["services"]["db"]
    assert re.fullmatch(r"postgres:15([.-].*)?", db["image"])
    assert "pg_isready" in " ".join(db["healthcheck"]["test"])
    assert hub["depends_on"]["db"]["condition"] == "service_healthy"
    named = set(doc["volumes"])
    mounts = [v.split(":")[0] for s in (hub, db) for v in s["volumes"]]
    assert set(mounts) == named == {"hub-data", "db-data"}
    assert [v for v in hub["volumes"] if v.endswith(":/data")]
    assert all(p.startswith("127.0.0.1:") for p in hub["ports"]), "publish on loopback; TLS proxy in front"
    assert hub["environment"]["DATABASE_URL"].startswith("postgresql://") and "@db:5432/" in hub["environment"][
        "DATABASE_URL"]
    assert ":?" in hub["environment"]["API_KEY"], "no default API key"
    assert hub.get("read_only") is True


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_unit_verifies_cleanly(tmp_path: Path) -> None:
    unit = (ROOT / "deploy" / "wa-hub.service").read_text()
    exec_start = re.search(r"^ExecStart=(\S+)", unit, re.M)
    assert exec_start is not None
    assert re.search(r"^User=(?!root)\S+", unit, re.M) and "StateDirectory=wa-hub" in unit
    assert "DATA_DIR=/var/lib/wa-hub" in unit and "ProtectSystem=strict" in unit
    local = tmp_path / "wa-hub.service"
    local.write_text(unit.replace(exec_start.group(1), shlex.quote(str(VENV_BIN / "wa-hub"))))
    out = subprocess.run(["systemd-analyze", "verify", str(local)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stderr.strip() == "", out.stderr

"""``docker-compose.nodes.yml``: two hub nodes on one PostgreSQL, valid against the Compose Specification."""

from __future__ import annotations

import importlib.resources
import json
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from wahub import config

ROOT = Path(__file__).resolve().parents[2]


def _doc() -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / "docker-compose.nodes.yml").read_text()))


def test_the_nodes_compose_file_is_valid_against_the_compose_specification() -> None:
    ref = importlib.resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    schema = json.loads(ref.read_text(encoding="utf-8"))
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = sorted(validator.iter_errors(_doc()), key=lambda e: list(e.path))
    assert not errors, [f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors]


def test_two_nodes_share_the_database_and_the_sessions_but_not_their_data_dirs() -> None:
    doc = _doc()
    hubs = [doc["services"][name] for name in ("hub1", "hub2")]
    envs = [h["environment"] for h in hubs]
    assert envs[0]["DATABASE_URL"] == envs[1]["DATABASE_URL"] and "@db:5432/" in envs[0]["DATABASE_URL"]
    assert envs[0]["NODE_ID"] != envs[1]["NODE_ID"]
    assert all(e["NODE_LEASES"] == "on" and e["SESSIONS_DIR"] == "/sessions" for e in envs)
    mounts = [{v.split(":")[1]: v.split(":")[0] for v in h["volumes"]} for h in hubs]
    assert mounts[0]["/sessions"] == mounts[1]["/sessions"], "a moved instance must find its session"
    assert mounts[0]["/data"] != mounts[1]["/data"], "one data directory per hub process (its lock)"
    assert all(p.startswith("127.0.0.1:") for h in hubs for p in h["ports"])
    assert all(h["depends_on"]["db"]["condition"] == "service_healthy" for h in hubs)
    for env in envs:  # every variable set here is a setting the hub knows
        settings = config.Settings(**{k: v for k, v in env.items() if "${" not in str(v)}, API_KEY="k" * 16)
        assert settings.node_leases == "on"

"""Meta's OpenAPI description of the Cloud API v23.0 as JSON Schemas, and Prism serving it on loopback.

The file is a verbatim copy of Meta's (sha256 pinned below) in ``tests/cloud_mock/``, next to the
npm project that installs Stoplight Prism (``npm ci --prefix tests/cloud_mock --ignore-scripts``).
"""

from __future__ import annotations

import copy
import functools
import hashlib
import os
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator

from tests.support.polling import wait_until

MOCK_DIR = Path(__file__).resolve().parents[1] / "cloud_mock"
SPEC = MOCK_DIR / "whatsapp-cloud-api-v23.0.yaml"
SPEC_SHA256 = "c7148d5e2aeff32f2effc3d3557795d7eddd07abf8b017c9e40e86bb3312c116"
PRISM = MOCK_DIR / "node_modules" / ".bin" / "prism"
# Meta's file gives a template button's `index` the pattern ^[2-6, 11-14]$ (one character of "1-6, "),
# which rejects "0" — the index its own example and the live API use for the first button.
TEMPLATE_INDEX_PATTERN = "^[2-6, 11-14]$"


@functools.cache
def spec() -> dict[str, Any]:
    """The parsed OpenAPI document (checked against the pinned digest)."""
    raw = SPEC.read_bytes()
    assert hashlib.sha256(raw).hexdigest() == SPEC_SHA256, "tests/cloud_mock/ holds another version of the spec"
    loaded = yaml.load(raw, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    assert isinstance(loaded, dict)
    return loaded


def schema(name: str, *, index_pattern: str | None = None) -> dict[str, Any]:
    """``components.schemas[name]`` with refs inlined and ``allOf`` merged (as Prism reads it).

    ``discriminator`` is dropped (jsonschema does not use it). ``index_pattern`` replaces the template
    button index pattern.
    """
    components = spec()["components"]["schemas"]

    def resolve(node: Any, depth: int = 0) -> Any:
        assert depth < 40, "reference cycle"
        if isinstance(node, list):
            return [resolve(n, depth) for n in node]
        if not isinstance(node, dict):
            return node
        if "$ref" in node:
            return resolve(copy.deepcopy(components[node["$ref"].rsplit("/", 1)[-1]]), depth + 1)
        out = {k: resolve(v, depth) for k, v in node.items() if k not in ("discriminator", "example", "examples")}
        if "allOf" in out:
            out = _merge([*out.pop("allOf"), out])
        if index_pattern and out.get("pattern") == TEMPLATE_INDEX_PATTERN:
            out["pattern"] = index_pattern
        return out

    resolved = resolve({"$ref": f"#/components/schemas/{name}"})
    assert isinstance(resolved, dict)
    return resolved


def _merge(parts: list[dict[str, Any]]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    closed = False
    for part in parts:
        for key, value in part.items():
            if key == "properties":
                merged.setdefault("properties", {}).update(value)
            elif key == "required":
                merged["required"] = sorted({*merged.get("required", []), *value})
            elif key == "additionalProperties":
                closed = closed or value is False
            else:
                merged[key] = value
    if closed:
        merged["additionalProperties"] = False
    return merged


def violations(schema_: dict[str, Any], instance: Any) -> list[str]:
    """Every way ``instance`` breaks ``schema_`` ("path: message"), empty when it validates."""
    return sorted(f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
                  for e in Draft202012Validator(schema_).iter_errors(instance))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


@contextmanager
def prism(log_path: Path) -> Iterator[str]:
    """Prism mocking Meta's spec on a loopback port; yields its base URL. Fails in CI when not installed."""
    if not PRISM.exists():
        message = "Prism is not installed: npm ci --prefix tests/cloud_mock --no-audit --no-fund --ignore-scripts"
        if os.environ.get("CI"):  # .ci/run installs it: without it the contract must not pass quietly
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    port = _free_port()
    with log_path.open("wb") as log:
        proc = subprocess.Popen([str(PRISM), "mock", "--host", "127.0.0.1", "--port", str(port), str(SPEC)],
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_until(lambda: proc.poll() is not None or _listening(port), timeout=150)
            if proc.poll() is not None:
                pytest.fail(f"Prism exited ({proc.returncode}): {log_path.read_text()[-2000:]}", pytrace=False)
            yield f"http://127.0.0.1:{port}"
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

"""The old-hub routes reach the send loop only through the runtime, never through an instance's internals."""

from __future__ import annotations

from pathlib import Path

import wahub.api

API = Path(wahub.api.__file__).parent


def test_no_api_module_reaches_into_a_send_loop() -> None:
    offenders = [f"{path.name}:{n}" for path in sorted(API.glob("*.py"))
                 for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if ".sendloop." in line]
    assert offenders == []

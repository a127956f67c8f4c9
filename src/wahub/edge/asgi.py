"""Small ASGI pieces the HTTP layers share."""

from __future__ import annotations

from starlette.types import Message, Receive


def replay(body: bytes) -> Receive:
    """A ``receive`` that hands an already-read request ``body`` (bytes) on once, then reports a disconnect."""
    sent = [False]

    async def receive() -> Message:
        if sent[0]:
            return {"type": "http.disconnect"}
        sent[0] = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive

"""The reference for the enqueue benchmark: a bare FastAPI app with one POST route.

The route has the path of ``send-message``, parses the JSON body and answers 202 with a small JSON
body; nothing else (no auth, no database, no logging). It is served exactly as ``wa-hub serve``
serves the hub: uvicorn with uvloop and the same httptools protocol class, no access log, and the
same garbage-collector tuning (``wahub.cli._tune_gc``), so a ratio to it is the cost of wa-hub's own
work per request.

Usage: ``.venv/bin/python bench/bare_app.py --port 8099``
"""

from __future__ import annotations

import argparse
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse


def build() -> FastAPI:
    """The bare app."""
    app = FastAPI()

    @app.post("/instances/{instance_id}/client/action/send-message")
    async def send_message(instance_id: str, request: Request) -> JSONResponse:
        body: dict[str, Any] = await request.json()
        return JSONResponse({"queued": True, "instanceId": instance_id, "chatId": body.get("chatId")},
                            status_code=202)

    @app.get("/ready")
    async def ready() -> dict[str, bool]:
        return {"ready": True}

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    import uvicorn

    from wahub import cli, serving

    app = build()
    cli._tune_gc()
    cli._tune_gil()  # no effect on one thread; set so the two processes differ only in their code
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=args.port, log_config=None,
                                           access_log=False, lifespan="on", http=cli._http_protocol(),
                                           h11_max_incomplete_event_size=serving.MAX_HEADER_BYTES))
    server.run()


if __name__ == "__main__":
    main()

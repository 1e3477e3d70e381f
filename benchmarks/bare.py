"""The baseline: a bare Starlette endpoint that only parses the JSON body, served by
uvicorn with the same settings as `amfeishu serve` (one worker, no access log).

    python -m benchmarks.bare --listen 127.0.0.1:8065 [--loop asyncio --http h11]
"""

from __future__ import annotations

import argparse
import json
import sys

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


async def alerts(request: Request) -> JSONResponse:
    data = json.loads(await request.body())
    return JSONResponse({"status": "queued", "targets": {"bare": len(data["alerts"])}})


async def ready(request: Request) -> Response:
    return Response("ready\n", media_type="text/plain")


app = Starlette(
    routes=[
        Route("/alerts/{target}", alerts, methods=["POST"]),
        Route("/-/ready", ready, methods=["GET"]),
    ]
)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bare")
    p.add_argument("--listen", default="127.0.0.1:8065")
    p.add_argument("--loop", default="auto", help="uvicorn's: auto (uvloop when installed)")
    p.add_argument("--http", default="auto", help="uvicorn's: auto (httptools when installed)")
    args = p.parse_args(argv)
    host, _, port = args.listen.rpartition(":")
    config = uvicorn.Config(
        app,
        host=host,
        port=int(port),
        log_config=None,
        access_log=False,
        lifespan="on",
        loop=args.loop,
        http=args.http,
    )
    uvicorn.Server(config).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`clipctl serve`: the HTTP layer (Starlette, run by uvicorn) over :class:`SearchService`.

Routes: ``/`` and ``/app.js`` (the page), ``GET /api/indices``, ``GET|POST /api/search``, ``GET
/thumb/{index}/{row}`` and ``GET /image/{index}/{row}`` (files of indexed rows, by row number only),
``/healthz``, and clip-retrieval's ``/indices-list``, ``/knn-service`` and ``/metadata``. Nothing else exists,
so a path from a request never reaches the file system. Bodies are read up to ``max_upload_bytes`` and refused
with 413 beyond; model calls run in worker threads so the event loop keeps answering.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from clipctl.search import clip_retrieval_api as compat
from clipctl.search.files import ThumbnailCache, image_media_type, indexed_file
from clipctl.search.service import RequestError, SearchService

PAGE_FILES = {"/": ("index.html", "text/html; charset=utf-8"), "/app.js": ("app.js", "text/javascript")}
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'",
}


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=SECURITY_HEADERS)


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 past ``limit`` bytes (whether or not Content-Length says so)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise RequestError(400, "Content-Length is not a number")
        if int(declared) > limit:
            raise RequestError(413, f"the request body is {int(declared):,} bytes; the limit is {limit:,}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError(413, f"the request body is over the {limit:,}-byte limit")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_json(body: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(body or b"{}")
    except (ValueError, UnicodeDecodeError):
        raise RequestError(400, "the body is not valid JSON") from None
    if not isinstance(payload, dict):
        raise RequestError(400, "the body must be a JSON object")
    return payload


async def parse_form(request: Request, body: bytes) -> dict[str, Any]:
    """A multipart or urlencoded form (already read within the size cap); an uploaded file becomes bytes."""

    async def replay() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    fields: dict[str, Any] = {}
    try:
        form = await Request(request.scope, replay).form(
            max_files=1, max_fields=16, max_part_size=len(body) + 1
        )
    except Exception as err:  # noqa: BLE001 - the multipart parser raises several types for a malformed body
        raise RequestError(400, f"malformed form data ({type(err).__name__})") from None
    try:
        for key, value in form.multi_items():
            fields[key] = await value.read() if hasattr(value, "read") else value
    finally:
        await form.close()
    return fields


class App:
    """Route handlers bound to one service."""

    def __init__(self, service: SearchService):
        self.service = service
        self.thumbnails = ThumbnailCache()

    async def page(self, request: Request) -> Response:
        name, media_type = PAGE_FILES[request.url.path]
        content = resources.files("clipctl.search").joinpath("static", name).read_bytes()
        return Response(content, media_type=media_type, headers=SECURITY_HEADERS)

    async def indices(self, request: Request) -> Response:
        return JSONResponse(self.service.describe())

    async def search(self, request: Request) -> Response:
        if request.method == "GET":
            fields: dict[str, Any] = dict(request.query_params)
        else:
            body = await read_body(request, self.service.options.max_upload_bytes)
            content_type = request.headers.get("content-type", "")
            if content_type.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
                fields = await parse_form(request, body)
            else:
                fields = parse_json(body)
        k = self.service.check_k(fields.get("k"))
        query = self.service.parse_query(fields)
        name, hits, took = await run_in_threadpool(self.service.search, fields.get("index"), query, k)
        results = [self.service.result_json(name, hit) for hit in hits]
        return JSONResponse(
            {"index": name, "query": query.kind, "k": k, "took_ms": round(took, 2), "results": results}
        )

    async def thumbnail(self, request: Request) -> Response:
        path = self._file(request)
        data = await run_in_threadpool(self.thumbnails.get, path, self.service.options.thumbnail_size)
        if data is None:
            return _error(404, "not found")
        return Response(
            data, media_type="image/jpeg", headers={**SECURITY_HEADERS, "Cache-Control": "max-age=3600"}
        )

    async def image(self, request: Request) -> Response:
        path = self._file(request)
        media_type = await run_in_threadpool(image_media_type, path)
        if media_type is None:
            return _error(404, "not found")
        return FileResponse(path, media_type=media_type, headers=SECURITY_HEADERS)

    def _file(self, request: Request) -> Any:
        name = request.path_params["index"]
        index = self.service.indexes.get(name)
        path = indexed_file(index, request.path_params["row"]) if index is not None else None
        if path is None:
            raise RequestError(404, "not found")
        return path

    async def health(self, request: Request) -> Response:
        return PlainTextResponse("ok")

    # -- clip-retrieval ---------------------------------------------------------------------------------------

    async def indices_list(self, request: Request) -> Response:
        return JSONResponse(list(self.service.indexes))

    async def knn_service(self, request: Request) -> Response:
        payload = parse_json(await read_body(request, self.service.options.max_upload_bytes))
        name, query = compat.knn_query(self.service, payload, request.headers.get("host", ""))
        base = str(request.base_url)
        results = await run_in_threadpool(compat.knn_response, self.service, name, query, payload, base)
        return JSONResponse(results)

    async def metadata(self, request: Request) -> Response:
        payload = parse_json(await read_body(request, self.service.options.max_upload_bytes))
        return JSONResponse(compat.metadata_response(self.service, payload, str(request.base_url)))


def create_app(service: SearchService) -> Starlette:
    from starlette.middleware import Middleware
    from starlette.middleware.cors import CORSMiddleware

    handlers = App(service)
    routes = [
        Route("/", handlers.page),
        Route("/app.js", handlers.page),
        Route("/api/indices", handlers.indices),
        Route("/api/search", handlers.search, methods=["GET", "POST"]),
        Route("/thumb/{index}/{row:int}", handlers.thumbnail),
        Route("/image/{index}/{row:int}", handlers.image),
        Route("/healthz", handlers.health),
        Route("/indices-list", handlers.indices_list),
        Route("/knn-service", handlers.knn_service, methods=["POST"]),
        Route("/metadata", handlers.metadata, methods=["POST"]),
    ]
    middleware = []
    if service.options.allow_origins:
        origins = list(service.options.allow_origins)
        middleware.append(Middleware(CORSMiddleware, allow_origins=origins, allow_methods=["GET", "POST"]))

    async def request_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestError)
        return _error(exc.status, exc.message)

    async def http_error(request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 500)
        return _error(status, "not found" if status == 404 else str(getattr(exc, "detail", "")) or "error")

    return Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers={RequestError: request_error, 404: http_error, 405: http_error},
    )


@contextmanager
def running_server(service: SearchService, host: str = "127.0.0.1") -> Iterator[str]:
    """Serve on an ephemeral port in a background thread for the duration of the block; yields the base URL
    (tests, benchmarks and the demo's self-check use it)."""
    import socket

    import uvicorn

    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.bind((host, 0))
    server = uvicorn.Server(uvicorn.Config(create_app(service), log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            sock.close()
            raise RuntimeError("the search server did not start")
        time.sleep(0.02)
    try:
        shown = f"[{host}]" if ":" in host else host
        yield f"http://{shown}:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def run_server(service: SearchService, host: str, port: int, *, log_level: str = "warning") -> None:
    """Serve until interrupted (Ctrl-C stops uvicorn cleanly)."""
    import uvicorn

    uvicorn.run(create_app(service), host=host, port=port, log_level=log_level, server_header=False)

"""`storage-calc serve`: the documented storage resources over HTTP, read-only.

A small Starlette application over a pool of database connections (`db.pool.Pool`). Every request
reads one row by its primary key, under the statement timeout every connection of the job has,
so no request can run an unbounded query. It never writes.

Unless it serves the figures to everyone, every request but the anonymous ones (the storage
policies and the health checks) passes `storage_calc.auth`'s check first: one answer, `401`
with the `DLCS-API` challenge, for a missing, malformed, wrong or forbidden credential alike.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any
from urllib.parse import unquote

import structlog
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from storage_calc import auth, db, jsonld, resources
from storage_calc.db.pool import Pool
from storage_calc.errors import DatabaseError, StorageCalcError
from storage_calc.keys import parse_int

LD_JSON = "application/ld+json"
# Figures change once a run; a client may reuse them for a few minutes.
CACHE_CONTROL = "public, max-age=300"
POOL_SIZE = 4
# The path and headers of a request together; a larger one is answered 431. uvicorn also
# buffers at most this much of a request's head that has not fully arrived (then 400).
# Bodies are never read: every route is GET.
MAX_HEADER_BYTES = 16 * 1024
# What anyone may read, as the platform's API allows it (matched on the decoded path).
ANONYMOUS = re.compile(r"/storagePolicies(/[^/]+)?|/ping|/healthz")

log = structlog.get_logger("storage_calc")


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message, "status": status}, status_code=status)


def segments(request: Request) -> list[str]:
    """The path's segments, each percent-decoded exactly once (`+` stays `+`)."""
    raw = request.scope.get("raw_path") or request.url.path.encode()
    return [unquote(part.decode("latin-1"), errors="strict") for part in raw.split(b"/")[1:]]


def path_customer(request: Request) -> int | None:
    """The customer a path is under, read as the routes read it; None for any other path
    (only administrators' keys open those)."""
    try:
        parts = segments(request)
    except UnicodeDecodeError:
        return None
    return parse_int(parts[1]) if len(parts) > 1 and parts[0] == "customers" else None


class HeadLimit:
    """Answers 431 to a request whose path and headers exceed MAX_HEADER_BYTES."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            size = len(scope.get("raw_path") or b"") + sum(
                len(name) + len(value) for name, value in scope["headers"]
            )
            if size > MAX_HEADER_BYTES:
                message = f"the request's path and headers exceed {MAX_HEADER_BYTES} bytes"
                await error(431, message)(scope, receive, send)
                return
        await self.app(scope, receive, send)


class BasicAuth:
    """Lets a request through only with a key and secret that may read its path."""

    def __init__(self, app: ASGIApp, keys: auth.KeyStore, pool: Pool) -> None:
        self.app = app
        self.keys = keys
        self.pool = pool

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or ANONYMOUS.fullmatch(scope["path"]):
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        customer = path_customer(request)
        credentials = auth.basic_credentials(request.headers.get("authorization"))
        holder = None
        if credentials is not None:
            key, secret = credentials
            try:
                holder = await run_in_threadpool(
                    self.keys.holder, key, secret, customer, self.connection
                )
            except DatabaseError:
                await error(503, "cannot check the credentials now; try again")(
                    scope, receive, send
                )
                return
        if holder is None:
            log.warning(
                "api_unauthorized",
                path=scope["path"][:200],
                key=None if credentials is None else credentials[0][:100],
                reason="no valid Basic credentials" if credentials is None else "refused",
                client=scope["client"][0] if scope.get("client") else None,
            )
            response = error(401, "a valid API key and secret are required")
            response.headers["WWW-Authenticate"] = auth.CHALLENGE
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def connection(self) -> contextlib.AbstractContextManager[db.Connection]:
        return self.pool.connection()


def resource_response(request: Request, resource: dict[str, Any] | None, what: str) -> Response:
    """The resource as documented, with validators; 304 when the client's copy is current."""
    if resource is None:
        return error(404, f"{what} not found")
    body = jsonld.render(resource).encode()
    etag = f'"{hashlib.sha256(body).hexdigest()[:32]}"'
    headers = {"ETag": etag, "Cache-Control": CACHE_CONTROL}
    stamp = resource.get("lastCalculated") or resource.get("lastChecked")
    if stamp:
        moment = datetime.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
        headers["Last-Modified"] = format_datetime(moment, usegmt=True)
    if not_modified(request, etag, headers.get("Last-Modified")):
        return Response(status_code=304, headers=headers)
    accept = request.headers.get("accept", "")
    media = "application/json" if wants_plain_json(accept) else LD_JSON
    return Response(body, media_type=media, headers=headers)


def not_modified(request: Request, etag: str, last_modified: str | None) -> bool:
    if_none_match = request.headers.get("if-none-match")
    if if_none_match is not None:
        return etag in [tag.strip() for tag in if_none_match.split(",")] or if_none_match == "*"
    since = request.headers.get("if-modified-since")
    if since and last_modified:
        try:
            return parsedate_to_datetime(last_modified) <= parsedate_to_datetime(since)
        except (TypeError, ValueError):
            return False
    return False


def wants_plain_json(accept: str) -> bool:
    return "application/json" in accept and LD_JSON not in accept


def create_app(
    database_url: str, base_url: str, keys: auth.KeyStore | None, connection_wait_s: float = 10
) -> Starlette:
    """The API over the database at `database_url`, with `@id`s under `base_url`, answering
    only the holders of `keys` (None: everyone). A request waits up to `connection_wait_s`
    for a free connection before its 503."""
    pool = Pool(database_url, POOL_SIZE, "storage-calc-api", connection_wait_s)

    def with_conn(read: Callable[[db.Connection], Response]) -> Response:
        try:
            with pool.connection() as conn:
                return read(conn)
        except DatabaseError as exc:
            return error(503, str(exc))
        except StorageCalcError as exc:
            return error(500, str(exc))

    def storage(request: Request) -> Response:
        parts = segments(request)
        parsed = [parse_int(p) for p in parts[1:-1:2]]
        ids = [i for i in parsed if i is not None]
        if len(ids) < len(parsed):
            return error(400, "customer and space must be non-negative integers")
        space: int | None
        if len(parts) == 3:  # customers/{c}/storage
            (customer,) = ids
            space = None
        elif len(parts) == 5:  # customers/{c}/spaces/{s}/storage
            customer, space = ids
        else:
            return error(404, "not found")
        what = f"storage of customer {customer}" + ("" if space is None else f" space {space}")
        return with_conn(
            lambda conn: resource_response(
                request, resources.customer_storage(conn, customer, space, base_url), what
            )
        )

    def image(request: Request) -> Response:
        parts = segments(request)  # customers/{c}/spaces/{s}/images/{asset}/storage
        customer, space = parse_int(parts[1]), parse_int(parts[3])
        if customer is None or space is None:
            return error(400, "customer and space must be non-negative integers")
        asset = parts[5]
        what = f"storage of asset {customer}/{space}/{asset}"
        return with_conn(
            lambda conn: resource_response(
                request, resources.image_storage(conn, customer, space, asset, base_url), what
            )
        )

    def policy(request: Request) -> Response:
        name = segments(request)[1]
        return with_conn(
            lambda conn: resource_response(
                request, resources.storage_policy(conn, name, base_url), f"storage policy {name!r}"
            )
        )

    def healthz(request: Request) -> Response:
        def check(conn: db.Connection) -> Response:
            conn.execute("SELECT 1")
            return JSONResponse({"status": "ok"})

        return with_conn(check)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        pool.open()
        try:
            yield
        finally:
            pool.close()

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return error(exc.status_code, exc.detail)

    async def undecodable(request: Request, exc: Exception) -> Response:
        return error(400, "the path is not percent-encoded UTF-8")

    get = ["GET"]
    app = Starlette(
        exception_handlers={404: http_error, 405: http_error, UnicodeDecodeError: undecodable},
        routes=[
            Route("/customers/{c}/storage", storage, methods=get),
            Route("/customers/{c}/spaces/{s}/storage", storage, methods=get),
            Route("/customers/{c}/spaces/{s}/images/{asset}/storage", image, methods=get),
            Route("/storagePolicies/{id}", policy, methods=get),
            Route("/healthz", healthz, methods=get),
            Route("/ping", healthz, methods=get),
        ],
        lifespan=lifespan,
    )
    if keys is not None:
        app.add_middleware(BasicAuth, keys=keys, pool=pool)
    app.add_middleware(HeadLimit)
    return app

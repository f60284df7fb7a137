"""The FastAPI application: start-up (store, retrieval, LLM engine), the edge where domain errors
become HTTP errors, and a request-size limit.

``create_app(settings)`` serves what the settings name; tests pass an ``engine`` of their own
(or ``None`` for an LLM-less service that answers degraded).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import ExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from agent.api.auth import AuthenticationError, PermissionDeniedError, RateLimitedError
from agent.catalog import InvalidRequestError
from agent.config import Settings
from agent.llm import registry
from agent.llm.engine import EngineError, UnknownAdapterError
from agent.observability import Metrics
from agent.pipeline.llm_gate import LLMUnavailable, RequestCancelled
from agent.pipeline.users import UnknownUserError
from agent.store import IdempotencyConflictError, UnknownImpressionError, UnknownItemError

logger = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"
_KEEP = object()  # "open the engine the settings name"


def error(
    status: int, message: str, kind: str = "invalid_request_error", headers: dict[str, str] | None = None
) -> JSONResponse:
    """OpenAI's error shape, so OpenAI clients raise with the message."""
    return JSONResponse({"error": {"message": message, "type": kind, "code": status}}, status, headers=headers)


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for e in exc.errors()[:5]:
        where = ".".join(str(x) for x in e.get("loc", ()) if x != "body")
        msg = e.get("msg", "invalid")
        if e.get("type") == "json_invalid":
            msg = f"malformed JSON: {e.get('ctx', {}).get('error', msg)}"
        elif e.get("type") == "extra_forbidden":
            msg = "unknown field"
        parts.append(f"{where}: {msg}" if where else msg)
    return "; ".join(parts)


class CountRequests:
    """ASGI middleware: counts each HTTP request by route and status in the agent's metrics.
    (A plain ASGI middleware, not Starlette's ``BaseHTTPMiddleware``: behind that one a route's
    ``request.is_disconnected()`` never sees the client leave, and abandoned LLM work would
    run on.)"""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        status = 500

        async def sending(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            agent = scope["app"].state.agent
            if agent is not None:
                route = getattr(scope.get("route"), "path", "unmatched")
                agent.metrics.requests.labels(route, str(status)).inc()


class BodyLimit:
    """ASGI middleware: bodies over ``limit`` bytes get 413 before any route reads them (by
    Content-Length, or by counting a chunked body)."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            return await self._reject(scope, receive, send)
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.limit:
                return await self._reject(scope, receive, send)
            if not message.get("more_body"):
                break
        body, sent = b"".join(chunks), False

        async def replay():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)

    async def _reject(self, scope, receive, send):
        response = error(413, f"request body larger than {self.limit} bytes")
        await response(scope, receive, send)


class TrustedHosts:
    """ASGI middleware: a request whose ``Host`` header names none of ``hosts`` (exact names,
    or ``*.domain`` for its subdomains) gets 421 Misdirected Request. An open Muse listens on the
    loopback address, but a web page the user visits can still reach it by DNS rebinding, with
    its own name in ``Host``: this is what keeps that page out. ``hosts=None`` lets any through."""

    def __init__(self, app, hosts: list[str] | None):
        self.app, self.hosts = app, hosts

    def allows(self, header: str | None) -> bool:
        """Whether a ``Host`` header value (``name``, ``name:port``, ``[v6]:port``) is allowed."""
        if not header:
            return False
        host = header.strip().lower()
        if host.startswith("["):  # an IPv6 address: [v6] or [v6]:port
            host = host[1 : host.find("]")]
        elif ":" in host:  # name:port
            host = host.rsplit(":", 1)[0]
        return any(host == h or (h.startswith("*.") and host.endswith(h[1:])) for h in self.hosts)

    async def __call__(self, scope, receive, send):
        if self.hosts is None or scope["type"] != "http":
            return await self.app(scope, receive, send)
        header = dict(scope["headers"]).get(b"host", b"").decode("latin-1")
        if self.allows(header):
            return await self.app(scope, receive, send)
        response = error(
            421,
            f"Host {header!r} is not one this service answers ({', '.join(self.hosts)}): "
            "add it to MUSE_ALLOWED_HOSTS if it is yours",
            "misdirected_request",
        )
        await response(scope, receive, send)


# Each domain error -> (HTTP status, OpenAI error type): the one place they become HTTP errors.
# Anything else is a bug: logged, and a 500.
DOMAIN_ERRORS: dict[type[Exception], tuple[int, str]] = {
    InvalidRequestError: (400, "invalid_request_error"),
    UnknownAdapterError: (400, "invalid_request_error"),
    AuthenticationError: (401, "authentication_error"),
    PermissionDeniedError: (403, "permission_error"),
    UnknownUserError: (404, "not_found"),
    UnknownItemError: (422, "invalid_request_error"),
    UnknownImpressionError: (422, "invalid_request_error"),
    IdempotencyConflictError: (409, "conflict"),
    RateLimitedError: (429, "rate_limit_error"),
    RequestCancelled: (499, "cancelled"),  # nobody reads it: the client has gone
    EngineError: (502, "llm_error"),
    LLMUnavailable: (502, "llm_error"),
}


async def _domain_error(_: Request, exc: Exception) -> JSONResponse:
    status, kind = next(DOMAIN_ERRORS[t] for t in type(exc).__mro__ if t in DOMAIN_ERRORS)
    headers = None
    if isinstance(exc, AuthenticationError):
        headers = {"WWW-Authenticate": "Bearer"}
    elif isinstance(exc, RateLimitedError):
        headers = {"Retry-After": str(exc.retry_after)}
    return error(status, str(exc), kind, headers)


def _lifespan(settings: Settings, engine: Any):
    """The app's lifespan: open the store, the engine (unless the caller gave one), the agent
    and its LLM warm-up; close them in reverse order at shutdown. Raises ``RuntimeError`` when
    the catalog is empty."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from agent.api.auth import KeyChecker
        from agent.indexing import load_retriever
        from agent.pipeline.recommender import MuseAgent
        from agent.store import open_store

        with ExitStack() as stack:
            store = open_store(settings.store_url)
            stack.callback(store.close)
            if not store.counts()["items"]:
                raise RuntimeError(
                    f"the catalog in {store} is empty: run `muse ingest PATH` "
                    "and `muse index` first (or `muse serve --demo`)"
                )
            (
                registry.ranker_adapter(settings),
                registry.ab_arms(settings),
            )  # an unknown adapter fails before vLLM starts
            llm = engine
            if llm is _KEEP:
                from agent.llm.session import open_engine

                llm = stack.enter_context(open_engine(settings, supervise=True))
            agent = MuseAgent(settings, store, load_retriever(settings), llm, Metrics())
            stack.callback(agent.close)
            # /readyz says ready once retrieval has answered once; the LLM stages warm up beside
            # it, and until they answer requests are served degraded (/readyz?require=llm waits).
            stop_warming = threading.Event()
            threading.Thread(
                target=agent.warm_up, kwargs={"stop": stop_warming}, name="muse-warm-up", daemon=True
            ).start()
            stack.callback(stop_warming.set)
            app.state.keys = KeyChecker(store, settings.auth == "keys", settings.rate_limit_storage)
            app.state.agent = agent
            yield
            app.state.agent = None

    return lifespan


def create_app(settings: Settings | None = None, engine: Any = _KEEP) -> FastAPI:
    """The Muse ASGI app: the routes of ``agent.api.routes``, errors in OpenAI's shape
    (``DOMAIN_ERRORS``), a request-body limit. ``engine``: an engine to use instead of the one
    the settings name (tests pass one; ``None`` serves without an LLM)."""
    settings = settings or Settings()

    app = FastAPI(title="Muse", version="0.1.0", lifespan=_lifespan(settings, engine))
    app.state.agent = None

    from agent.api.routes import router

    app.include_router(router)
    # The page: plain HTML and one ES module, served from the package (nothing from a network).
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError):
        return error(422, _validation_message(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException):
        kind = "not_found" if exc.status_code == 404 else "error"
        return error(exc.status_code, str(exc.detail), kind, exc.headers)  # 405 keeps its Allow

    for kind in DOMAIN_ERRORS:
        app.add_exception_handler(kind, _domain_error)

    @app.exception_handler(Exception)
    async def bug(request: Request, exc: Exception):
        logger.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return error(500, f"internal error ({type(exc).__name__}); it is logged on the server", "server_error")

    app.add_middleware(CountRequests)
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    app.add_middleware(TrustedHosts, hosts=settings.trusted_hosts())  # outermost: checked first
    return app

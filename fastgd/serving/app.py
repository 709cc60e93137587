"""The HTTP application: routes, errors as JSON, metrics, and the watcher that reloads.

Every route runs through `_observed`, which counts the request and its latency by route
and status, and turns a `BadRequest` into its 4xx and anything unexpected into a 500 that
says only "internal error" (the traceback goes to the server's log, never to a client).
Parsing a body over 8 KB and predicting run in a worker thread, so the event loop keeps
answering health checks while a large batch is predicted; a small body is answered on the
event loop, which is quicker than the hop to a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import os
import time

import numpy as np

from fastgd.serving import inputs
from fastgd.serving.inputs import BadRequest
from fastgd.serving.models import ModelFile

MAX_BODY_BYTES = 32 << 20  # about 100,000 rows of 20 features as JSON
POLL_SECONDS = 1.0         # how often the model file is looked at
INLINE_BODY_BYTES = 8192   # bodies predicted on the event loop (well under a millisecond)
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                   2.5, 5.0, 10.0)

log = logging.getLogger("fastgd.serve")


class Metrics:
    """The server's Prometheus metrics, in a registry of its own."""

    def __init__(self, served):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = registry = CollectorRegistry()
        self.requests = Counter("fastgd_requests", "HTTP requests, by route and status",
                                ["route", "status"], registry=registry)
        self.errors = Counter("fastgd_request_errors", "Requests answered with a 4xx or 5xx "
                              "status, by route and status", ["route", "status"],
                              registry=registry)
        self.latency = Histogram("fastgd_request_duration_seconds", "Time to answer a "
                                 "request, by route", ["route"], buckets=LATENCY_BUCKETS,
                                 registry=registry)
        self.rows = Counter("fastgd_rows_predicted", "Rows predicted", registry=registry)
        self.reloads = Counter("fastgd_model_reloads", "Reloads of the model file, by result "
                               "(success: another model now serves; failure: the file did "
                               "not load, the old model still serves)", ["result"],
                               registry=registry)
        self.loaded = Gauge("fastgd_model_loaded_timestamp_seconds", "When the model served "
                            "was loaded (Unix time)", registry=registry)
        self.reloads.labels("success")
        self.reloads.labels("failure")
        self.loaded.set(served.loaded_at)

    def observe(self, route: str, status: int, seconds: float) -> None:
        self.requests.labels(route, str(status)).inc()
        if status >= 400:
            self.errors.labels(route, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def text(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


def create_app(path, *, name: str | None = None, max_body_bytes: int = MAX_BODY_BYTES,
               reload_token: str | None = None, poll_seconds: float | None = POLL_SECONDS):
    """The ASGI application (Starlette) that serves the model file at `path` as `name`
    (default: the file's name without its extension). A file that is missing or not a
    model is a ValueError or OSError here, before anything serves. `poll_seconds` None:
    reload on POST only."""
    require()
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.routing import Route

    models = ModelFile(path, name or _model_name(path))
    metrics = Metrics(models.current)
    server = _Server(models, metrics, max_body_bytes, reload_token)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        watcher = (asyncio.create_task(server.watch(poll_seconds))
                   if poll_seconds is not None else None)
        try:
            yield
        finally:
            if watcher is not None:
                watcher.cancel()

    async def not_routed(request, error: HTTPException):
        metrics.observe("other", error.status_code, 0.0)
        return _error(error.status_code, f"{request.method} {request.url.path}: "
                      f"{error.detail}", getattr(error, "headers", None))

    routes = [
        Route("/v1/models/{name}:predict", server.observed("predict", server.predict),
              methods=["POST"]),
        Route("/predict", server.observed("predict", server.predict), methods=["POST"]),
        Route("/v1/models", server.observed("metadata", server.models_list), methods=["GET"]),
        Route("/v1/models/{name}", server.observed("metadata", server.metadata),
              methods=["GET"]),
        Route("/v1/models/{name}/reload", server.observed("reload", server.reload),
              methods=["POST"]),
        Route("/health", server.observed("health", server.health), methods=["GET"]),
        Route("/metrics", server.observed("metrics", server.metrics_text), methods=["GET"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan,
                    exception_handlers={HTTPException: not_routed})
    app.state.models, app.state.metrics = models, metrics
    return app


class _Server:
    """The routes' handlers, over one ModelFile."""

    def __init__(self, models: ModelFile, metrics: Metrics, max_body_bytes: int,
                 reload_token: str | None):
        self.models, self.metrics = models, metrics
        self.max_body_bytes, self.reload_token = max_body_bytes, reload_token

    def observed(self, route: str, handler):
        """`handler` with its request counted and timed, and its errors as JSON."""
        from starlette.requests import ClientDisconnect

        async def endpoint(request):
            start = time.perf_counter()
            try:
                response = await handler(request)
            except BadRequest as problem:
                response = _error(problem.status, str(problem))
            except ClientDisconnect:  # nobody to answer: counted as nginx does, 499
                response = _error(499, "the client closed the connection")
            except Exception:
                log.exception("internal error on %s %s", request.method, request.url.path)
                response = _error(500, "internal error (see the server's log)")
            self.metrics.observe(route, response.status_code, time.perf_counter() - start)
            return response
        return endpoint

    async def predict(self, request):
        from starlette.concurrency import run_in_threadpool

        served = self._served(request)  # this request's model, whatever reloads meanwhile
        kind = inputs.media_type(request.headers.get("content-type"))
        body = await self._body(request)
        flag = request.query_params.get("proba", "false").lower()
        if flag not in ("true", "false", "1", "0"):
            raise BadRequest(f"?proba= takes true or false, got {flag!r}")
        proba = flag in ("true", "1")
        if len(body) <= INLINE_BODY_BYTES:  # quicker than the hop to a worker thread
            content, rows = _predict(served, body, kind, proba)
        else:
            content, rows = await run_in_threadpool(_predict, served, body, kind, proba)
        self.metrics.rows.inc(rows)
        return _json_response(200, content)

    async def metadata(self, request):
        if request.path_params["name"].endswith(":predict"):
            raise BadRequest(f"{request.url.path} takes POST", 405)
        return _json_response(200, json.dumps(self._served(request).metadata(
            self.models.path)).encode())

    async def models_list(self, request):
        return _json_response(200, json.dumps({"models": [self.models.current.name]}).encode())

    async def health(self, request):
        served = self.models.current
        return _json_response(200, json.dumps({
            "status": "ready", "live": True, "ready": True,
            "model": served.metadata(self.models.path)}).encode())

    async def metrics_text(self, request):
        from prometheus_client import CONTENT_TYPE_LATEST
        from starlette.responses import Response

        return Response(self.metrics.text(), media_type=CONTENT_TYPE_LATEST)

    async def reload(self, request):
        from starlette.concurrency import run_in_threadpool

        self._served(request)
        if self.reload_token is not None:
            given = request.headers.get("authorization", "")
            if not given.startswith("Bearer "):
                raise BadRequest("reloading needs the header Authorization: Bearer <token>",
                                 401)
            if not hmac.compare_digest(given[7:].encode(), self.reload_token.encode()):
                raise BadRequest("the reload token is not this server's", 403)
        try:
            changed = await run_in_threadpool(self._reload)
        except (ValueError, OSError) as error:
            raise BadRequest(f"the model file did not load, the model served is unchanged: "
                             f"{error}", 409) from None
        return _json_response(200, json.dumps({"reloaded": changed, "model": (
            self.models.current.metadata(self.models.path))}).encode())

    async def watch(self, poll_seconds: float) -> None:
        """Reload the model whenever its file changes, until cancelled."""
        from starlette.concurrency import run_in_threadpool

        while True:
            await asyncio.sleep(poll_seconds)
            if self.models.changed():
                with contextlib.suppress(Exception):  # counted and logged: watch on
                    await run_in_threadpool(self._reload)

    def _reload(self) -> bool:
        """ModelFile.reload, counted in the metrics and logged."""
        try:
            changed = self.models.reload()
        except Exception as error:
            self.metrics.reloads.labels("failure").inc()
            log.warning("%s did not load; still serving sha256 %s: %s", self.models.path,
                        self.models.current.sha256[:12], error)
            raise
        if changed:
            served = self.models.current
            self.metrics.reloads.labels("success").inc()
            self.metrics.loaded.set(served.loaded_at)
            log.info("reloaded %s: sha256 %s", self.models.path, served.sha256[:12])
        return changed

    def _served(self, request):
        served = self.models.current
        name = request.path_params.get("name", served.name)
        if name != served.name:
            raise BadRequest(f"no model named {name!r}: this server serves {served.name!r}",
                             404)
        return served

    async def _body(self, request) -> bytes:
        """The body, refused with a 413 as soon as it is known to be over the limit."""
        limit = self.max_body_bytes
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise BadRequest(f"the body ({int(declared):,} bytes) is over this server's limit "
                             f"of {limit:,} bytes (fastgd serve --max-body-mb)", 413)
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise BadRequest(f"the body is over this server's limit of {limit:,} bytes "
                                 f"(fastgd serve --max-body-mb)", 413)
            chunks.append(chunk)
        return b"".join(chunks)


def _predict(served, body: bytes, kind: str, proba: bool):
    """(the JSON answer's bytes, rows predicted), in a worker thread."""
    X, offset, asked = inputs.rows_of(served, body, kind)
    proba = proba or asked
    if proba and not served.model.has_proba:
        raise BadRequest("probabilities are a classifier's; this model is a regressor"
                         if not served.is_classifier else
                         f"this classifier's loss, {served.model.loss.name}, gives no "
                         f"probabilities")
    predictions, probabilities, finite = served.model.predictions(X, proba, offset)
    if not finite:
        raise BadRequest("the predictions overflow (values too large for the model)", 422)
    answer = {"predictions": predictions}
    if probabilities is not None:
        answer["probabilities"] = probabilities
    return _dumps(answer), X.shape[0]


def _dumps(answer: dict) -> bytes:
    """The answer's arrays as JSON: by orjson, which writes numeric arrays itself, where
    installed (the same shortest round-trip numbers as json's)."""
    if inputs.orjson is not None:
        return inputs.orjson.dumps(
            {key: np.ascontiguousarray(a) if a.dtype.kind in "fiub" else a.tolist()
             for key, a in answer.items()}, option=inputs.orjson.OPT_SERIALIZE_NUMPY)
    return json.dumps({key: a.tolist() for key, a in answer.items()}).encode()


def _json_response(status: int, content: bytes):
    from starlette.responses import Response

    return Response(content, status_code=status, media_type="application/json")


def _error(status: int, message: str, headers=None):
    from starlette.responses import Response

    return Response(json.dumps({"error": message}).encode(), status_code=status,
                    media_type="application/json", headers=headers)


def require(*modules) -> None:
    """An ImportError naming the extra unless `modules` (default: the application's) are
    installed."""
    import importlib

    for module in modules or ("starlette", "prometheus_client"):
        try:
            importlib.import_module(module)
        except ImportError:
            raise ImportError(f"fastgd serve needs starlette, uvicorn and prometheus-client "
                              f"({module} is missing): pip install 'fastgd[serve]'") from None


def _model_name(path) -> str:
    return os.path.splitext(os.path.basename(os.fspath(path)))[0] or "model"

"""HTTP side of the server (same process and loop as gRPC): V2 REST health, metadata and
JSON inference, the repository extension, and Prometheus ``/metrics``."""

from __future__ import annotations

import json
import logging

from aiohttp import web
from onyxserve.server import metrics
from onyxserve.server.dataplane import DataPlane
from onyxserve.server.errors import InvalidInput, client_error
from onyxserve.server.models.served import MISSING_VALUE, PLATFORM
from onyxserve.server.rest.codec import decode_request, decode_routing, encode_response

log = logging.getLogger(__name__)
DATAPLANE = web.AppKey("dataplane", DataPlane)


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


@web.middleware
async def error_middleware(request: web.Request, handler):
    try:
        return await handler(request)
    except web.HTTPException:  # aiohttp's own answers (unknown route, body too large)
        raise
    except Exception as exc:
        error = client_error(exc, log, f"{request.method} {request.path}")
        return _error(error.http_status, error.message)


def _dp(request: web.Request) -> DataPlane:
    return request.app[DATAPLANE]


def _version(request: web.Request) -> str:
    return request.match_info.get("version", "")


async def live(request: web.Request) -> web.Response:
    return web.json_response({"live": True})


async def ready(request: web.Request) -> web.Response:
    ok = _dp(request).ready()
    return web.json_response({"ready": ok}, status=200 if ok else 503)


async def server_metadata(request: web.Request) -> web.Response:
    name, version, extensions = _dp(request).server_metadata()
    return web.json_response({"name": name, "version": version, "extensions": list(extensions)})


async def model_ready(request: web.Request) -> web.Response:
    ok = _dp(request).model_ready(request.match_info["name"], _version(request))
    return web.json_response({"ready": ok}, status=200 if ok else 503)


async def model_metadata(request: web.Request) -> web.Response:
    dp = _dp(request)
    model = dp.model(request.match_info["name"], _version(request))
    describe = lambda t: {"name": t.name, "datatype": t.datatype, "shape": list(t.shape)}  # noqa: E731
    # inputs also say how to send a missing value (an extension field V2 clients ignore)
    return web.json_response({
        "name": model.name,
        "versions": dp.model_versions(model.name),
        "platform": PLATFORM,
        "inputs": [describe(t) | {"parameters": {"missing": MISSING_VALUE[t.datatype]}} for t in model.inputs],
        "outputs": [describe(t) for t in model.outputs],
    })


async def infer(request: web.Request) -> web.Response:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise InvalidInput("request body is not valid JSON") from None
    tensors, requested = decode_request(body)
    result = await _dp(request).infer(
        request.match_info["name"], _version(request), tensors, requested, routing=decode_routing(body)
    )
    return web.json_response(encode_response(result, body.get("id", "")))


async def shadow_report(request: web.Request) -> web.Response:
    """How the shadow version compares with production on mirrored traffic (server/shadow/mirror.py)."""
    return web.json_response(_dp(request).shadow_report(request.match_info["name"]))


async def repository_index(request: web.Request) -> web.Response:
    index = _dp(request).repository_index()
    return web.json_response([
        {"name": s.name, "version": s.version, "state": s.state, "reason": s.reason, "stages": list(s.stages),
         **({"variant": s.variant} if s.variant else {})}
        for s in index
    ])


async def repository_load(request: web.Request) -> web.Response:
    await _dp(request).load_model(request.match_info["name"])
    return web.json_response({})


async def repository_unload(request: web.Request) -> web.Response:
    await _dp(request).unload_model(request.match_info["name"])
    return web.json_response({})


async def drift_report(request: web.Request) -> web.Response:
    """The version's drift report (see server/drift/report.py); ?psi_threshold= overrides the setting."""
    report = _dp(request).drift_report(
        request.match_info["name"], _version(request), request.query.get("psi_threshold")
    )
    return web.json_response(report)


async def prometheus(request: web.Request) -> web.Response:
    return web.Response(body=metrics.render(), content_type="text/plain", charset="utf-8")


def build_app(dataplane: DataPlane, *, with_metrics: bool = True, max_body_bytes: int) -> web.Application:
    app = web.Application(middlewares=[error_middleware], client_max_size=max_body_bytes)
    app[DATAPLANE] = dataplane
    model = "/v2/models/{name}"
    versioned = "/v2/models/{name}/versions/{version}"
    app.add_routes([
        web.get("/v2/health/live", live),
        web.get("/v2/health/ready", ready),
        web.get("/v2", server_metadata),
        *(web.get(base, model_metadata) for base in (model, versioned)),
        *(web.get(f"{base}/ready", model_ready) for base in (model, versioned)),
        *(web.post(f"{base}/infer", infer) for base in (model, versioned)),
        *(web.get(f"{base}/drift", drift_report) for base in (model, versioned)),
        web.get(f"{model}/shadow", shadow_report),
        web.post("/v2/repository/index", repository_index),
        web.post("/v2/repository/models/{name}/load", repository_load),
        web.post("/v2/repository/models/{name}/unload", repository_unload),
    ])
    if with_metrics:
        app.router.add_get("/metrics", prometheus)
    return app

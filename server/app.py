"""One serving process: gRPC + HTTP on one event loop, the repository, and graceful shutdown.

SIGTERM/SIGINT only set a flag. Shutdown then: health goes NOT_SERVING (and the server stops
being ready) for ``shutdown_delay_s`` so load balancers notice, new requests are refused,
in-flight requests get ``shutdown_grace_s`` to finish, and the process exits 0.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass

import grpc
from aiohttp import web
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection
from onyxserve.core.cpu import available_cpus
from onyxserve.protos import grpc_service_pb2 as pb
from onyxserve.protos import grpc_service_pb2_grpc as pb_grpc
from onyxserve.protos._pool import POOL
from onyxserve.repository.stages import StageReader
from onyxserve.server.dataplane import DataPlane
from onyxserve.server.drift.monitor import DriftSettings
from onyxserve.server.grpc.servicer import InferenceServicer
from onyxserve.server.models.manager import ModelRepository
from onyxserve.server.rest.app import build_app
from onyxserve.server.settings import Settings
from onyxserve.server.tls import grpc_credentials, http_context

log = logging.getLogger("onyxserve")
SERVICE = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@dataclass
class BoundAddresses:
    grpc: str
    http: str | None
    uds: str | None


def reflection_pool():
    """Our private pool, plus the health and reflection files, so reflection can describe all three."""
    from grpc_reflection.v1alpha import reflection_pb2

    for module in (health_pb2, reflection_pb2):
        try:
            POOL.FindFileByName(module.DESCRIPTOR.name)
        except KeyError:
            POOL.AddSerializedFile(module.DESCRIPTOR.serialized_pb)
    return POOL


class Server:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        threads = settings.intra_op_threads or max(1, available_cpus() // settings.workers)
        self.health = health_aio.HealthServicer()
        self.repository = ModelRepository(
            settings.repository,
            intra_op_threads=threads,
            unload_grace_s=settings.shutdown_grace_s,
            on_change=self._model_changed,
            stage_reader=StageReader(settings.registry_path()) if settings.version_source == "registry" else None,
            drift=DriftSettings.from_environment(
                enabled=settings.drift, alpha=settings.drift_alpha, psi_threshold=settings.drift_psi_threshold,
                min_rows=settings.drift_min_rows,
                window_s=settings.drift_window_s, window_rows=settings.drift_window_rows,
                snapshot_s=settings.drift_snapshot_s,
            ),
        )
        self.dataplane = DataPlane(self.repository, shadow_max_in_flight=settings.shadow_max_in_flight,
                                   shadow_gather_ms=settings.shadow_gather_ms)
        self._grpc: grpc.aio.Server | None = None
        self._http: web.AppRunner | None = None
        self._stop = asyncio.Event()
        self._background: set[asyncio.Task] = set()
        self.addresses: BoundAddresses | None = None

    def _model_changed(self, name: str, serving: bool) -> None:
        status = SERVING if serving and not self.dataplane.draining else NOT_SERVING
        self._spawn(self.health.set(name, status))

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def start(self) -> BoundAddresses:
        s = self.settings
        if s.model_control == "explicit" and s.load_models:
            for name in s.load_models:
                try:
                    await self.repository.load(name)
                except Exception as exc:  # noqa: BLE001 - one bad model must not stop the rest
                    log.error("%s", exc)
        elif s.model_control != "explicit" or not s.load_models:
            await self.repository.scan()
        self.dataplane.started = True
        await self.health.set("", SERVING)
        await self.health.set(SERVICE, SERVING)

        options = [
            ("grpc.max_receive_message_length", s.max_message_bytes),
            ("grpc.max_send_message_length", s.max_message_bytes),
            ("grpc.so_reuseport", 1 if s.workers > 1 else 0),
        ]
        self._grpc = grpc.aio.server(options=options)
        pb_grpc.add_GRPCInferenceServiceServicer_to_server(InferenceServicer(self.dataplane), self._grpc)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self._grpc)
        reflection.enable_server_reflection(
            (SERVICE, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME),
            self._grpc,
            pool=reflection_pool(),
        )
        credentials = grpc_credentials(s)
        try:
            if credentials is None:
                port = self._grpc.add_insecure_port(s.bind_address())
            else:
                port = self._grpc.add_secure_port(s.bind_address(), credentials)
        except RuntimeError:
            port = 0
        if port == 0:
            raise SystemExit(f"onyxserve: cannot bind gRPC to {s.bind_address()} (address in use?)")
        uds = None
        if s.uds is not None:
            s.uds.unlink(missing_ok=True)
            uds = f"unix:{s.uds}"
            # a unix socket is reached only from inside the pod/host: plaintext, like Triton's
            self._grpc.add_insecure_port(uds)
        await self._grpc.start()

        http = None
        if s.http_port >= 0:
            app = build_app(self.dataplane, with_metrics=s.metrics, max_body_bytes=s.max_message_bytes)
            self._http = web.AppRunner(app, access_log=None, handle_signals=False)
            await self._http.setup()
            site = web.TCPSite(self._http, s.host, s.http_port, reuse_port=s.workers > 1,
                               ssl_context=http_context(s))
            await site.start()
            http_port = site._server.sockets[0].getsockname()[1]  # the real port when 0 was asked
            http = f"{s.host}:{http_port}"
        if s.model_control == "poll":
            self._spawn(self._poll())
        self.addresses = BoundAddresses(grpc=f"{s.host}:{port}", http=http, uds=uds)
        log.info("onyxserve ready: grpc=%s http=%s uds=%s models=%s version_source=%s", self.addresses.grpc, http,
                 uds, [f"{m.name}/{m.version}" for m in self.repository.ready_models()],
                 f"registry ({s.registry_path()})" if s.version_source == "registry" else "config")
        return self.addresses

    async def _poll(self) -> None:
        while not self._stop.is_set():
            try:
                await asyncio.wait_for(self._stop.wait(), self.settings.poll_interval_s)
                return
            except TimeoutError:
                pass
            try:
                await self.repository.scan()
            except Exception:  # noqa: BLE001 - polling must survive a bad scan
                log.exception("repository scan failed")

    def request_stop(self) -> None:
        self._stop.set()

    async def wait_stopped(self) -> None:
        await self._stop.wait()

    async def shutdown(self) -> None:
        """Drain: NOT_SERVING, refuse new work, let in-flight requests finish, close."""
        s = self.settings
        self._stop.set()
        self.dataplane.draining = True
        await self.health.enter_graceful_shutdown()
        if s.shutdown_delay_s > 0:
            await asyncio.sleep(s.shutdown_delay_s)
        self.dataplane.refusing = True
        if self._grpc is not None:
            await self._grpc.stop(s.shutdown_grace_s)
        await self.dataplane.shadow.drain(s.shutdown_grace_s)
        await self.repository.close(s.shutdown_grace_s)
        if self._http is not None:
            await self._http.cleanup()
        for task in list(self._background):
            task.cancel()
        if s.uds is not None:
            s.uds.unlink(missing_ok=True)
        log.info("onyxserve stopped")


async def serve(settings: Settings) -> int:
    server = Server(settings)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, server.request_stop)
    await server.start()
    await server.wait_stopped()
    log.info("signal received: draining (grace %.1fs)", settings.shutdown_grace_s)
    await server.shutdown()
    return 0

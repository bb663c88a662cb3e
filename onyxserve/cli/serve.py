"""``onyxserve serve``: flags override ONYXSERVE_* environment, which overrides --config."""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path

from onyxserve.cli._options import add_command, add_registry_db, add_repository
from onyxserve.errors import OnyxserveError


def configure_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s")


def register(subparsers: argparse._SubParsersAction) -> None:
    # No argparse defaults here: a flag left out must not mask the environment or the --config file
    # (load_settings applies them in that order); the defaults written in the help are Settings'.
    p = add_command(
        subparsers,
        "serve",
        "serve a model repository over V2 gRPC and HTTP",
        "Settings come from the --config file, then ONYXSERVE_* environment variables, then these flags.",
    )
    add_repository(p, resolved_by_settings=True)
    p.add_argument("--config", type=Path, help="settings file (.toml or .json)")
    p.add_argument("--host", help="bind address (default: 127.0.0.1)")
    p.add_argument("--grpc-port", type=int, help="gRPC port (default: 8001)")
    p.add_argument("--http-port", type=int, help="HTTP port, -1 disables (default: 8000)")
    p.add_argument("--uds", type=Path, help="also serve gRPC on this unix socket")
    p.add_argument("--workers", type=int, help="serving processes sharing the ports (default: 1)")
    p.add_argument("--model-control", choices=("poll", "explicit", "none"), help="repository control mode (default: poll)")
    p.add_argument("--poll-interval", dest="poll_interval_s", type=float, help="seconds between scans (default: 5)")
    p.add_argument("--version-source", choices=("registry", "config"),
                   help="which versions serve: registry stages (production answers requests without a version,"
                        " shadow/staging by explicit version) or config.json's version_policy (default: registry)")
    add_registry_db(p)
    p.add_argument("--load-model", dest="load_models", action="append", help="explicit mode: load at start")
    p.add_argument("--max-message-bytes", type=int, help="largest gRPC message accepted (default: 16 MiB)")
    p.add_argument("--intra-op-threads", type=int, help="ORT threads per model, 0 = CPU quota / workers (default: 0)")
    p.add_argument("--shadow-max-in-flight", type=int,
                   help="mirrored requests a shadow version may have waiting; more are dropped (default: 64)")
    p.add_argument("--shadow-gather-ms", type=float,
                   help="a shadow worker gathers mirrored requests this long per shadow batch (default: 2)")
    p.add_argument("--shutdown-grace", dest="shutdown_grace_s", type=float,
                   help="seconds of drain time on SIGTERM (default: 10)")
    p.add_argument("--shutdown-delay", dest="shutdown_delay_s", type=float,
                   help="seconds of NOT_SERVING before draining (default: 0)")
    p.add_argument("--tls-cert", type=Path, help="PEM certificate: serve gRPC and HTTP over TLS")
    p.add_argument("--tls-key", type=Path, help="PEM private key for --tls-cert")
    p.add_argument("--tls-client-ca", type=Path, help="require client certificates from this CA (mTLS)")
    p.add_argument("--log-level", help="DEBUG, INFO, WARNING, ERROR (default: INFO)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from onyxserve.server.settings import load_settings

    overrides = {k: v for k, v in vars(args).items() if k not in ("func", "command", "config")}
    try:
        settings = load_settings(args.config, **overrides)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in exc.errors())
        raise OnyxserveError(f"invalid settings: {problems}") from None
    except (OSError, ValueError) as exc:
        raise OnyxserveError(f"invalid settings: {exc}") from None
    configure_logging(settings.log_level)
    if settings.workers > 1:
        from onyxserve.server.workers import run_workers

        return run_workers(settings)
    from onyxserve.server.app import serve

    return run_event_loop(serve(settings))


def run_event_loop(main) -> int:
    """uvloop when installed (the gRPC/asyncio per-request overhead is most of our CPU), else asyncio."""
    import os
    try:
        import uvloop
    except ImportError:
        uvloop = None
    if uvloop is not None and os.environ.get("ONYXSERVE_EVENT_LOOP", "uvloop") == "uvloop":
        return uvloop.run(main)
    return asyncio.run(main)

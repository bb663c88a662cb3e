"""TLS and mutual TLS on the gRPC and HTTP listeners, with certificates made for the test."""

from __future__ import annotations

import ssl
import time
import urllib.request

import grpc
import pytest
from onyxserve.protos import grpc_service_pb2 as pb
from onyxserve.protos import grpc_service_pb2_grpc as pb_grpc

from tests.certs import make_pki
from tests.serving import ServerProcess


def ready(channel: grpc.Channel) -> bool:
    return pb_grpc.GRPCInferenceServiceStub(channel).ServerReady(pb.ServerReadyRequest(), timeout=5).ready


def start(server: ServerProcess) -> ServerProcess:
    # the helper's readiness probe speaks plaintext, so wait on the log line instead
    server.start(wait_ready=False)
    deadline = time.monotonic() + 60
    while "onyxserve ready" not in server.log():
        assert server.proc.poll() is None, server.log()
        assert time.monotonic() < deadline, server.log()
        time.sleep(0.1)
    return server


def test_tls_and_mutual_tls(model_repo, tmp_path):
    root, _ = model_repo
    pki = make_pki(tmp_path / "pki")
    args = ["--model-control", "none", "--tls-cert", str(pki.server_cert), "--tls-key", str(pki.server_key)]
    server = start(ServerProcess(root, args=args))
    try:
        creds = grpc.ssl_channel_credentials(root_certificates=pki.ca.read_bytes())
        with grpc.secure_channel(server.grpc_target, creds) as channel:
            assert ready(channel)
        with grpc.insecure_channel(server.grpc_target) as channel, pytest.raises(grpc.RpcError):
            ready(channel)
        context = ssl.create_default_context(cafile=pki.ca)
        url = f"https://127.0.0.1:{server.http_port}/v2/health/ready"
        assert urllib.request.urlopen(url, context=context, timeout=5).status == 200
    finally:
        assert server.stop() == 0

    server = start(ServerProcess(root, args=[*args, "--tls-client-ca", str(pki.ca)]))
    try:
        anonymous = grpc.ssl_channel_credentials(root_certificates=pki.ca.read_bytes())
        with grpc.secure_channel(server.grpc_target, anonymous) as channel, pytest.raises(grpc.RpcError):
            ready(channel)
        mutual = grpc.ssl_channel_credentials(
            root_certificates=pki.ca.read_bytes(),
            private_key=pki.client_key.read_bytes(),
            certificate_chain=pki.client_cert.read_bytes(),
        )
        with grpc.secure_channel(server.grpc_target, mutual) as channel:
            assert ready(channel)
    finally:
        assert server.stop() == 0


def test_tls_settings_must_pair(model_repo, tmp_path):
    root, _ = model_repo
    server = ServerProcess(root, args=["--tls-cert", str(tmp_path / "x.pem")]).start(wait_ready=False)
    assert server.proc.wait(30) != 0
    assert "tls_cert and tls_key go together" in server.log()

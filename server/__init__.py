"""The inference server: transports, dataplane, model repository, batching, metrics.

The path of one inference request (paths from the repository root; what each step hands on)::

    transport   server/grpc/servicer.py, decoded by server/grpc/codec.py (protobuf)
                | server/rest/app.py, decoded by server/rest/codec.py (JSON)     -> Tensor list
    dataplane   server/dataplane.py: refusing? requested outputs, outcome metrics,
                shadow mirroring once answered
    model       server/models/manager.py: the version asked for, else production, else the
                highest; server/models/decoder.py maps the tensors on its features -> RowBlock
    batching    server/batcher.py: bounded queue, deadlines, concurrent requests gathered
                into one batch for server/models/served.py run_batch
    normalize   core/normalizer.py (+ core/_normalize.pyx): gather, impute, scale, encode;
                drift sketches counted in the same pass   -> float32 (float64: double trees) [N, width]
    score       core/scorer.py: ONNX Runtime                      -> label and probabilities, or value
    encoder     server/grpc/codec.py encode_outputs | server/rest/codec.py encode_response

Transports call only the dataplane (inference, metadata, repository control, reports). An error
a client may see is an ``errors.OnyxError`` (gRPC status and HTTP code); both transports answer
through ``errors.client_error``, which makes anything else an InternalError (INTERNAL / 500)
with a generic message and leaves its traceback in the log. ``server/app.py`` runs both
transports on one event loop and drains them on SIGTERM.
"""

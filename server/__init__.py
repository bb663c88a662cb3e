"""The inference server: transports, dataplane, model repository, batching, metrics."""

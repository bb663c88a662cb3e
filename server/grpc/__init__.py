"""The gRPC transport: the V2 GRPCInferenceService, translating protobuf to and from the dataplane."""

"""Generated protobuf and gRPC code for the V2 inference protocol (see protos/generate.py)."""

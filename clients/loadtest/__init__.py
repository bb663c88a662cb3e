"""Load-test harness speaking plain V2 gRPC."""

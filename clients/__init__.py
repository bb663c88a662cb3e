"""Python clients and the load-test harness."""

"""torch → phonjax converters (torch is imported only inside this package and tests/benchmarks)."""

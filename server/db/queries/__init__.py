"""Named queries, one module per domain. Builders return statements so tests can EXPLAIN the
exact SQL the product runs; the async functions run them through the instrumented `Database`."""

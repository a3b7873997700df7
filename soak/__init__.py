"""The soak: several copies under mixed traffic for minutes, Redis restarted and a copy
killed part-way, then every order a client was told about checked against PostgreSQL.

`python -m soak --minutes N --copies 3` (`make soak`); tests/test_soak.py runs a short one.
"""

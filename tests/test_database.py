"""The pool's errors are the store's own: whatever pg8000 raises leaves database.py as
DatabaseUnavailable (a retry may work: 503) or DatabaseFailed (it will not)."""

from __future__ import annotations

import pytest

from function.database import Database, DatabaseFailed, DatabaseUnavailable
from function.targets import parse_database_url

pytestmark = pytest.mark.anyio  # the pool is the function's own async door to pg8000


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def pool_on(url: str) -> Database:
    return Database(parse_database_url(url), pool_size=1, transaction_pooling=False,
                    connect_timeout_seconds=2, statement_timeout_seconds=2)


async def test_a_statement_postgresql_refuses_is_the_stores_error_with_its_sqlstate_and_the_pool_goes_on(
    postgres,  # type: ignore[no-untyped-def]
) -> None:
    database = pool_on(postgres.url)

    with pytest.raises(DatabaseFailed) as refused:
        await database.run(lambda session: session.run("SELEC 1"))  # a bug, not an outage

    assert refused.value.sqlstate == "42601"
    assert "SELEC" not in str(refused.value)  # the SQLSTATE, never the statement
    assert await database.run(lambda session: session.run("SELECT 1")) == [[1]]


async def test_a_postgresql_that_is_not_there_is_unavailable(postgres) -> None:  # type: ignore[no-untyped-def]
    nowhere = postgres.url.replace(f":{postgres.port}/", ":1/")

    with pytest.raises(DatabaseUnavailable):
        await pool_on(nowhere).run(lambda session: session.run("SELECT 1"))

import asyncio
import logging.config

from alembic import context
from sqlalchemy.ext.asyncio import create_async_engine

import app.tables
from app.db import metadata

config = context.config
if config.config_file_name and not logging.getLogger().handlers:
    logging.config.fileConfig(config.config_file_name, disable_existing_loggers=False)
assert app.tables  # imported for its side effect: every table registered on `metadata`


def run_migrations(connection) -> None:
    context.configure(connection=connection, target_metadata=metadata, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


async def run_online() -> None:
    engine = create_async_engine(config.attributes["url"])
    async with engine.connect() as connection:
        await connection.run_sync(run_migrations)
    await engine.dispose()


if context.is_offline_mode():
    context.configure(url=config.attributes["url"], target_metadata=metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(run_online())

"""The fault suite runs on the integration suite's real broker and warehouse fixtures."""

from tests.integration.conftest import (  # noqa: F401
    chdb_dsn,
    kafka_bootstrap,
    pytest_collection_modifyitems,
    pytest_terminal_summary,
    settings,
    warehouse,
)

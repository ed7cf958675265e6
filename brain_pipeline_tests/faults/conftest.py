"""The real-services fixtures (a disposable PostgreSQL cluster, deployments on it) for the
fault tests that need them."""

from brain_pipeline_tests.service.conftest import (  # noqa: F401 (fixtures, used by name)
    deployments,
    postgres_server,
    rabbitmq_broker,
)

"""The deployment's settings, without the services: executors, errors, the instance folder."""

from __future__ import annotations

import dagster as dg
import pytest

from brain_pipeline.apps import service
from brain_pipeline.apps.cli import build_parser
from brain_pipeline.definitions import FULL_PIPELINE_JOB, build_definitions
from brain_pipeline.defs import executors
from brain_pipeline.defs.training import trained_model


def test_an_unreachable_postgres_is_named_with_the_setting_to_change() -> None:
    settings = service.PostgresSettings.from_env(
        {"BRAIN_PIPELINE_PG_PORT": "1", "BRAIN_PIPELINE_PG_PASSWORD": "do-not-print-me"}
    )
    with pytest.raises(service.ServiceError) as error:
        settings.connect()
    message = str(error.value)
    assert "127.0.0.1:1" in message and "BRAIN_PIPELINE_PG_PORT" in message
    assert "do-not-print-me" not in message and "do-not-print-me" not in repr(settings)


def test_a_port_that_is_not_a_number_is_refused_by_name() -> None:
    with pytest.raises(service.ServiceError, match="BRAIN_PIPELINE_PG_PORT must be a port"):
        service.PostgresSettings.from_env({"BRAIN_PIPELINE_PG_PORT": "fivefourthreetwo"})


def test_the_instance_folder_gets_the_deploy_config_once(tmp_path) -> None:
    home = service.prepare_home(tmp_path / "home")
    assert (home / "dagster.yaml").read_text() == service.DEPLOY_CONFIG.read_text()
    (home / "dagster.yaml").write_text("# edited by the team\n")
    service.prepare_home(home)
    assert (home / "dagster.yaml").read_text() == "# edited by the team\n"
    with pytest.raises(service.ServiceError, match="does not exist"):
        service.prepare_home(tmp_path / "other", tmp_path / "missing.yaml")


def test_the_ui_binds_to_loopback_unless_told_otherwise() -> None:
    args = build_parser().parse_args(["service"])
    assert args.host == "127.0.0.1"
    webserver, daemon = service.service_commands(args.host, args.port)
    assert webserver[webserver.index("-h") + 1] == "127.0.0.1" and daemon[1] == "run"


def test_the_executor_follows_the_environment() -> None:
    assert executors.executor_from_env({}) is None
    celery = executors.executor_from_env({"BRAIN_PIPELINE_EXECUTOR": "celery"})
    assert celery.name == "celery"
    # A broker URL given in the environment stays there: the job's config names the variable.
    secret = {"BRAIN_PIPELINE_CELERY_BROKER": "pyamqp://user:secret@broker//"}
    assert executors.celery_broker(secret) == {"env": "BRAIN_PIPELINE_CELERY_BROKER"}
    assert executors.celery_broker({}) == executors.DEFAULT_CELERY_BROKER
    with pytest.raises(ValueError, match="not one of: default, celery, k8s"):
        executors.executor_from_env({"BRAIN_PIPELINE_EXECUTOR": "spark"})


@pytest.mark.parametrize("name", ["celery", "k8s"])
def test_the_definitions_load_with_each_executor(name: str, tiny_data_dir) -> None:
    executor = executors.executor_from_env({"BRAIN_PIPELINE_EXECUTOR": name})
    defs = build_definitions(data_dir=tiny_data_dir, executor=executor)
    dg.Definitions.validate_loadable(defs)
    assert defs.resolve_job_def(FULL_PIPELINE_JOB).executor_def.name == name


def test_training_has_its_queue_and_its_pool() -> None:
    (spec,) = trained_model.specs
    assert trained_model.op.tags["dagster-celery/queue"] == executors.TRAINING_QUEUE
    assert trained_model.op.pool == executors.TRAINING_POOL
    assert spec.key.path == ["trained_model"]

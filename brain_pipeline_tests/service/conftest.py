"""Fixtures for the tests against real services: a fresh PostgreSQL database with a deploy
instance, Celery workers on a RabbitMQ node, and the tiny data. The servers are the tests'
own (servers.py), started once per session where the programs are installed; everything a
test starts, it stops; every database and queue it makes, it drops."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from brain_pipeline.apps.service import (
    PostgresSettings,
    ensure_database,
    prepare_home,
    set_pool_limits,
    with_pg_defaults,
)
from brain_pipeline.core.model.sweep import load_sweep
from brain_pipeline.defs.executors import CELERY_BROKER_ENV
from brain_pipeline_tests.conftest import FAST_RUN
from brain_pipeline_tests.service import servers

SWEEP = load_sweep()  # the repository's sweep.toml, as the definitions under test read it

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
# The job runs one training configuration: the sweep's default partition.
PARTITION = ["--tags", json.dumps({"dagster/partition": SWEEP.default})]
JOB = ["-m", "brain_pipeline.definitions", "-a", "defs", "-j", "full_pipeline", *PARTITION]


@dataclass
class Deployment:
    """One instance: its database, home, artifacts root and the environment to run in."""

    settings: PostgresSettings
    home: Path
    artifacts: Path
    env: dict[str, str]
    config: Path  # the fast run config, as YAML-compatible JSON

    def run(self, *args: str, timeout: float = 900, **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run(
            list(args),
            env=self.env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=timeout,
            **kwargs,
        )

    def start_job(self) -> subprocess.Popen:
        """`dagster job execute` of full_pipeline with this deployment's run config."""
        return subprocess.Popen(
            [str(BIN / "dagster"), "job", "execute", *JOB, "-c", str(self.config)],
            env=self.env,
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def instance(self):
        import dagster as dg
        from dagster._core.instance.ref import InstanceRef

        with _environ(self.env):
            return dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(self.home)))


@contextlib.contextmanager
def _environ(env: dict[str, str]):
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def drop_database(settings: PostgresSettings) -> None:
    connection = settings.connect("postgres")
    try:
        with connection.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{settings.database}" WITH (FORCE)')
    finally:
        connection.close()


@pytest.fixture(scope="session")
def postgres_server() -> dict[str, str]:
    """The BRAIN_PIPELINE_PG_* settings of a disposable PostgreSQL cluster."""
    bindir = servers.postgres_bindir()
    if bindir is None:
        servers.unavailable("postgres")
    with servers.disposable_postgres(bindir) as port:
        yield {
            "BRAIN_PIPELINE_PG_HOST": "127.0.0.1",
            "BRAIN_PIPELINE_PG_PORT": str(port),
            "BRAIN_PIPELINE_PG_USER": "postgres",
        }


@pytest.fixture(scope="session")
def rabbitmq_broker() -> str:
    """The AMQP URL of a disposable RabbitMQ node."""
    server = servers.rabbitmq_server()
    if server is None:
        servers.unavailable("rabbitmq")
    with servers.disposable_rabbitmq(server) as url:
        yield url


@pytest.fixture(scope="session")
def chromium() -> Path:
    path = servers.chromium()
    if path is None:
        servers.unavailable("chromium")
    return path


@pytest.fixture
def deployments(tmp_path: Path, tiny_data_dir: Path, request):
    """A factory of fresh deployments (each its own database and artifacts root); one whose
    executor is Celery gets the session's RabbitMQ node as its broker. The servers are asked
    for in that order, so that a machine missing both hears of both."""
    made: list[Deployment] = []

    def make(**extra_env: str) -> Deployment:
        if extra_env.get("BRAIN_PIPELINE_EXECUTOR") == "celery":
            extra_env.setdefault(CELERY_BROKER_ENV, request.getfixturevalue("rabbitmq_broker"))
        postgres_server = request.getfixturevalue("postgres_server")
        root = tmp_path / f"deployment{len(made)}"
        name = f"bp_test_{uuid.uuid4().hex[:10]}"
        settings = PostgresSettings.from_env({**postgres_server, "BRAIN_PIPELINE_PG_DB": name})
        assert ensure_database(settings)
        config = root / "fast_run.json"
        home = prepare_home(root / "instance")
        config.write_text(json.dumps(FAST_RUN))
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("BRAIN_PIPELINE_")}
        env = {
            **with_pg_defaults({**inherited, **postgres_server}),
            "BRAIN_PIPELINE_PG_DB": name,
            "DAGSTER_HOME": str(home),
            "BRAIN_PIPELINE_DATA_DIR": str(tiny_data_dir),
            "BRAIN_PIPELINE_ARTIFACTS_DIR": str(root / "artifacts"),
            "PYTHONPATH": str(REPO),
            **extra_env,
        }
        set_pool_limits(home, env)  # as `brain-pipeline service` does
        made.append(Deployment(settings, home, root / "artifacts", env, config))
        return made[-1]

    yield make
    for deployment in made:
        drop_database(deployment.settings)


@contextlib.contextmanager
def celery_workers(deployment: Deployment, names: list[str], log_dir: Path):
    """Start `brain-pipeline worker` processes; yield {name: Popen}; stop them and purge."""
    processes = {}
    try:
        for name in names:
            log = open(log_dir / f"{name}.log", "w")  # noqa: SIM115 - closed with the process
            processes[name] = subprocess.Popen(
                [str(BIN / "brain-pipeline"), "worker", "--name", name],
                env=deployment.env,
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        for name in names:
            _wait_for(lambda n=name: "ready." in (log_dir / f"{n}.log").read_text(), 120, name)
        yield processes
    finally:
        for process in processes.values():
            stop(process, timeout=30)
        _purge_queues(deployment)


def _purge_queues(deployment: Deployment) -> None:
    """Delete the step queues so that nothing a test left behind reaches another test."""
    from kombu import Connection

    from brain_pipeline.defs.executors import TRAINING_QUEUE

    with Connection(deployment.env[CELERY_BROKER_ENV]) as conn:
        channel = conn.channel()
        for queue in ("dagster", TRAINING_QUEUE):
            with contextlib.suppress(Exception):
                channel.queue_delete(queue)


def _wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.5)
    raise TimeoutError(f"{what} not ready after {timeout} s")


@contextlib.contextmanager
def dagster_daemon(deployment: Deployment, log_dir: Path):
    """`dagster-daemon run` on the deployment (queue, run monitoring); stopped afterwards."""
    log = open(log_dir / "daemon.log", "w")  # noqa: SIM115 - closed below
    daemon = subprocess.Popen(
        [str(BIN / "dagster-daemon"), "run", "-w", str(REPO / "workspace.yaml")],
        env=deployment.env,
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        yield daemon
    finally:
        stop(daemon)
        log.close()


# Stops a process started in a session of its own: SIGTERM to its group, then SIGKILL.
stop = servers.stop_group

"""The pipeline on the team deployment: a PostgreSQL instance, steps on Celery workers."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import time
import uuid
from pathlib import Path

import psutil
import pytest

from brain_pipeline.apps.console import HEADLINE_METADATA
from brain_pipeline_tests.conftest import ASSETS, MANIFEST_PARTS
from brain_pipeline_tests.service.conftest import (
    BIN,
    JOB,
    REPO,
    celery_workers,
    drop_database,
    stop,
)

pytestmark = pytest.mark.services

# The summary's figures, which must not depend on where a step ran (energy does; the
# champion's version names its run).
COMPARED = tuple(k for k in HEADLINE_METADATA if k not in ("energy_kwh", "champion_version"))
IN_PROCESS = {"execution": {"config": {"in_process": {}}}}


def _events(instance, run_id: str) -> list:
    return [e for e in instance.all_logs(run_id) if e.dagster_event is not None]


def _summary(instance, run_id: str) -> dict:
    """Per asset: the compared metadata and the artifact's file names; per check: passed."""
    summary = {}
    for entry in _events(instance, run_id):
        event = entry.dagster_event
        if event.event_type_value == "ASSET_MATERIALIZATION":
            metadata = event.event_specific_data.materialization.metadata
            folder = Path(metadata["path"].value).parent if "path" in metadata else None
            summary[event.asset_key.to_user_string()] = {
                "metadata": {k: metadata[k].value for k in COMPARED if k in metadata},
                "files": sorted(p.name for p in folder.iterdir()) if folder else None,
            }
        elif event.event_type_value == "ASSET_CHECK_EVALUATION":
            summary[event.event_specific_data.check_name] = event.event_specific_data.passed
    return summary


def test_a_run_on_postgres_is_stored_in_postgres(deployments) -> None:
    # Trust authentication accepts any password: this one must never be written anywhere.
    password = f"pw-{uuid.uuid4().hex}"
    deployment = deployments(BRAIN_PIPELINE_PG_PASSWORD=password)
    done = deployment.run(
        str(BIN / "brain-pipeline"), "materialize", "--config", str(deployment.config)
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert password not in done.stdout + done.stderr
    assert not [p for p in deployment.home.parent.rglob("*") if _holds(p, password)]
    connection = deployment.settings.connect()  # read the tables directly, not through Dagster
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT run_id, status FROM runs")
            ((run_id, status),) = cursor.fetchall()
            cursor.execute(
                "SELECT count(*) FROM event_logs WHERE run_id = %s AND "
                "dagster_event_type = 'ASSET_MATERIALIZATION'",
                (run_id,),
            )
            (materializations,) = cursor.fetchone()
            cursor.execute(
                "SELECT count(*) FROM event_logs WHERE event LIKE %s", (f"%{password}%",)
            )
            assert cursor.fetchone() == (0,)
    finally:
        connection.close()
    assert status == "SUCCESS" and materializations == len(ASSETS) + len(MANIFEST_PARTS)
    instance = deployment.instance()
    assert type(instance.run_storage).__name__ == "PostgresRunStorage"
    assert set(_summary(instance, run_id)) >= set(ASSETS)


def test_celery_workers_run_every_step_with_the_same_results(deployments, tmp_path) -> None:
    reference = deployments()  # the same job and config, every step in the run's process
    in_process_config = {**json.loads(reference.config.read_text()), **IN_PROCESS}
    reference.config.write_text(json.dumps(in_process_config))
    done = reference.run(str(BIN / "dagster"), "job", "execute", *JOB, "-c", str(reference.config))
    assert done.returncode == 0, done.stderr[-3000:]
    (in_process,) = reference.instance().get_runs()

    deployment = deployments(BRAIN_PIPELINE_EXECUTOR="celery")
    with celery_workers(deployment, ["w1", "w2"], tmp_path) as workers:
        worker_pids = {
            child.pid
            for process in workers.values()
            for child in psutil.Process(process.pid).children(recursive=True)
        }
        run = deployment.start_job()
        output, _ = run.communicate(timeout=900)
    assert run.returncode == 0, output[-3000:]
    instance = deployment.instance()
    (on_celery,) = instance.get_runs()
    starts = [
        e
        for e in _events(instance, on_celery.run_id)
        if e.dagster_event.event_type_value == "STEP_START"
    ]
    assert len(starts) >= len(ASSETS)
    step_pids = {e.dagster_event.pid for e in starts}
    assert run.pid not in step_pids and step_pids <= worker_pids, (step_pids, worker_pids)
    hosts = {
        e.dagster_event.event_specific_data.metadata["Celery worker"].value
        for e in _events(instance, on_celery.run_id)
        if "in celery worker" in (e.dagster_event.message or "")
    }
    assert {host.split("@")[0] for host in hosts} <= {"w1", "w2"} and hosts
    assert _summary(instance, on_celery.run_id) == _summary(reference.instance(), in_process.run_id)
    print(
        f"full materialization: in process {_seconds(reference.instance(), in_process.run_id):.1f}"
        f" s, on two Celery workers {_seconds(instance, on_celery.run_id):.1f} s"
    )


def _holds(path: Path, text: str) -> bool:
    return path.is_file() and text.encode() in path.read_bytes()


def _seconds(instance, run_id: str) -> float:
    record = instance.get_run_record_by_id(run_id)
    return record.end_time - record.start_time


def test_the_service_command_creates_its_database_and_serves_the_ui(deployments, tmp_path):
    import signal
    import socket
    import urllib.request

    from brain_pipeline.apps.service import ensure_database

    deployment = deployments()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**deployment.env, "BRAIN_PIPELINE_PG_DB": f"{deployment.settings.database}_svc"}
    created = dataclasses.replace(deployment.settings, database=env["BRAIN_PIPELINE_PG_DB"])
    service = subprocess.Popen(
        [
            str(BIN / "brain-pipeline"),
            "service",
            "--home",
            str(tmp_path / "svc"),
            "--port",
            str(port),
        ],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(1)
        else:
            raise TimeoutError("the webserver did not answer")
        assert not ensure_database(created)  # the service made it
        assert (tmp_path / "svc" / "dagster.yaml").is_file()
    finally:
        os.killpg(service.pid, signal.SIGINT)  # Ctrl-C: the whole foreground group
        try:
            output, _ = service.communicate(timeout=120)
        finally:
            stop(service, timeout=5)
            drop_database(created)
    assert f"created database '{env['BRAIN_PIPELINE_PG_DB']}'" in output
    assert f"UI at http://127.0.0.1:{port}" in output

"""The daemon of `brain-pipeline service` killed (docs/deploy.md, "Faults and what survives
them"): the service stops the webserver and exits with status 1 and the reason, so that a
supervisor restarts it; a run queued meanwhile waits in PostgreSQL and completes under the
restarted service."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import dagster as dg
import psutil
import pytest

from brain_pipeline.apps.service import WORKSPACE
from brain_pipeline_tests.service.conftest import BIN, PARTITION, REPO, Deployment

pytestmark = [pytest.mark.services, pytest.mark.faults]
DONE = (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED)


def _start_service(deployment: Deployment, port: int, log: Path) -> subprocess.Popen:
    """The service, its output (and its children's, the runs' included) appended to `log`:
    a pipe nobody reads while runs go on would fill up and stall every writer."""
    command = ["service", "--home", str(deployment.home), "--port", str(port)]
    with open(log, "a") as output:
        service = subprocess.Popen(
            [str(BIN / "brain-pipeline"), *command],
            env=deployment.env,
            cwd=REPO,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=5) as r:
                if r.status == 200:
                    return service
        except OSError:
            time.sleep(1)
    os.killpg(service.pid, signal.SIGKILL)
    raise TimeoutError(f"the webserver did not answer: {log.read_text()[-3000:]}")


def _daemon_of(service: subprocess.Popen) -> psutil.Process:
    (daemon,) = [
        child
        for child in psutil.Process(service.pid).children()
        if any("dagster-daemon" in part for part in child.cmdline())
    ]
    return daemon


def _runs(deployment: Deployment) -> list:
    instance = deployment.instance()
    try:
        return list(instance.get_runs())
    finally:
        instance.dispose()


def _events(deployment: Deployment, run_id: str) -> str:
    """The run's events but the planning ones, one a line (for a failure's message)."""
    instance = deployment.instance()
    try:
        events = [entry.dagster_event for entry in instance.all_logs(run_id)]
    finally:
        instance.dispose()
    return "\n".join(
        f"{event.event_type_value}: {event.message}"
        for event in events
        if event is not None and not event.event_type_value.endswith("_PLANNED")
    )


def test_a_killed_daemon_stops_the_service_with_the_reason_and_no_queued_run_is_lost(
    deployments,
) -> None:
    deployment = deployments()
    log = deployment.home.parent / "service.log"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    service = _start_service(deployment, port, log)
    try:
        daemon = _daemon_of(service)
        daemon.send_signal(signal.SIGKILL)
        service.wait(timeout=90)
    finally:
        if service.poll() is None:
            os.killpg(service.pid, signal.SIGKILL)
    assert service.returncode == 1
    assert f"the daemon (pid {daemon.pid}) was killed by SIGKILL" in log.read_text()
    # With no daemon, a run launched as the UI launches it waits in the queue ...
    job = ["-w", str(WORKSPACE), "-j", "full_pipeline", *PARTITION, "-c", str(deployment.config)]
    launched = deployment.run(str(BIN / "dagster"), "job", "launch", *job, timeout=300)
    assert launched.returncode == 0, launched.stdout + launched.stderr
    (queued,) = _runs(deployment)
    assert queued.status == dg.DagsterRunStatus.QUEUED
    # ... and the restarted service's daemon takes it and runs it to the end.
    service = _start_service(deployment, port, log)
    try:
        deadline = time.monotonic() + 900
        while (run := _runs(deployment)[0]).status not in DONE:
            assert time.monotonic() < deadline, f"the queued run is still {run.status}"
            time.sleep(5)
        assert run.run_id == queued.run_id
        assert run.status == dg.DagsterRunStatus.SUCCESS, _events(deployment, run.run_id)
    finally:
        os.killpg(service.pid, signal.SIGINT)
        service.wait(timeout=120)
    assert service.returncode == 0, log.read_text()[-3000:]

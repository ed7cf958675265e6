"""Disposable servers for the services tests: a PostgreSQL cluster and a RabbitMQ node of the
tests' own, on free loopback ports in temporary folders, stopped and deleted afterwards. The
machine's own servers are never touched.

Where a program is not installed the tests that need it are skipped, one line per program
saying what it is and how to install it; under CI=true (CI has every program) a missing
program is a failure instead, so CI never passes by skipping.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

# Overrides for programs installed where the search below does not look.
PG_BIN_ENV = "BRAIN_PIPELINE_TEST_PG_BIN"  # the folder holding initdb and pg_ctl
RABBITMQ_SERVER_ENV = "BRAIN_PIPELINE_TEST_RABBITMQ_SERVER"  # the rabbitmq-server script
CHROMIUM_ENV = "BRAIN_PIPELINE_TEST_CHROMIUM"  # the chromium executable

INSTALL = {
    "postgres": "PostgreSQL's server programs (initdb, pg_ctl) are not installed: "
    "`apt-get install postgresql` (Debian/Ubuntu), `brew install postgresql` (macOS), "
    f"or set {PG_BIN_ENV} to the folder that holds them",
    "rabbitmq": "RabbitMQ's server (rabbitmq-server) is not installed: "
    "`apt-get install rabbitmq-server` (Debian/Ubuntu), `brew install rabbitmq` (macOS), "
    f"or set {RABBITMQ_SERVER_ENV} to the script",
    "chromium": "Chromium, the browser the UI test drives, is not installed: "
    f"`apt-get install chromium` (Debian), or set {CHROMIUM_ENV} to a Chromium executable",
}


def unavailable(program: str) -> None:
    """Skip the test that needs `program` (fail under CI=true) with how to install it."""
    message = INSTALL[program]
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true: {message}", pytrace=False)
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _first(candidates: list[str]) -> Path | None:
    found = [Path(c) for c in candidates if c and Path(c).is_file() and os.access(c, os.X_OK)]
    return found[0] if found else None


def postgres_bindir() -> Path | None:
    """The folder of initdb and pg_ctl: the override, PATH, then the usual install places."""
    versioned = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=_version, reverse=True)
    pg_ctl = _first(
        [
            os.path.join(os.environ.get(PG_BIN_ENV, "/nonexistent"), "pg_ctl"),
            shutil.which("pg_ctl") or "",
            *versioned,
            *sorted(glob.glob("/opt/homebrew/opt/postgresql*/bin/pg_ctl"), reverse=True),
            *sorted(glob.glob("/usr/local/opt/postgresql*/bin/pg_ctl"), reverse=True),
            "/usr/local/pgsql/bin/pg_ctl",
        ]
    )
    return pg_ctl.parent if pg_ctl and (pg_ctl.parent / "initdb").is_file() else None


def _version(path: str) -> int:
    digits = "".join(ch for ch in Path(path).parts[-3] if ch.isdigit())
    return int(digits or 0)


def rabbitmq_server() -> Path | None:
    """Debian's real script first (its /usr/sbin wrapper switches to the rabbitmq user)."""
    return _first(
        [
            os.environ.get(RABBITMQ_SERVER_ENV, ""),
            "/usr/lib/rabbitmq/bin/rabbitmq-server",
            shutil.which("rabbitmq-server") or "",
        ]
    )


def chromium() -> Path | None:
    return _first(
        [
            os.environ.get(CHROMIUM_ENV, ""),
            shutil.which("chromium") or "",
            shutil.which("chromium-browser") or "",
            "/usr/bin/chromium",
        ]
    )


def _owned_temp_folder(prefix: str, user: str | None) -> Path:
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    if user:
        entry = pwd.getpwnam(user)
        os.chown(folder, entry.pw_uid, entry.pw_gid)
    return folder


def _unprivileged_user() -> str | None:
    """PostgreSQL refuses to run as root: as root, run it as `postgres` (or `nobody`)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    raise RuntimeError("running as root and no unprivileged user to run PostgreSQL as")


@contextlib.contextmanager
def disposable_postgres(bindir: Path) -> Iterator[int]:
    """A fresh cluster (trust authentication, user `postgres`) on a free loopback port; yields
    the port. fsync is off: the cluster lives as long as the test session."""
    user = _unprivileged_user()
    run_as = ["runuser", "-u", user, "--"] if user else []
    folder = _owned_temp_folder("bp-test-pg-", user)
    data, port = folder / "data", free_port()
    options = f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories='' -c fsync=off"
    try:
        subprocess.run(
            [*run_as, str(bindir / "initdb"), "-D", str(data), "--auth=trust", "-U", "postgres"]
            + ["--no-sync", "-E", "UTF8"],
            check=True,
            capture_output=True,
        )
        subprocess.run(
            [*run_as, str(bindir / "pg_ctl"), "-D", str(data), "-l", str(folder / "server.log")]
            + ["-w", "-t", "60", "-o", options, "start"],
            check=True,
            capture_output=True,
        )
        try:
            yield port
        finally:
            subprocess.run(
                [*run_as, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                capture_output=True,
            )
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def disposable_rabbitmq(server: Path) -> Iterator[str]:
    """A RabbitMQ node of its own (name, ports, Erlang cookie, port mapper, data in a temporary
    folder); yields its AMQP URL once it accepts connections."""
    folder = Path(tempfile.mkdtemp(prefix="bp-test-rabbitmq-"))
    (folder / "enabled_plugins").write_text("[].\n")
    port, node = free_port(), f"bp_test_{uuid.uuid4().hex[:8]}@localhost"
    env = {
        **os.environ,
        "HOME": str(folder),  # the Erlang cookie the server and rabbitmqctl share
        "ERL_EPMD_PORT": str(free_port()),  # a port mapper of its own, stopped below
        "RABBITMQ_NODENAME": node,
        "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
        "RABBITMQ_NODE_PORT": str(port),
        "RABBITMQ_DIST_PORT": str(free_port()),
        "RABBITMQ_MNESIA_BASE": str(folder / "mnesia"),
        "RABBITMQ_LOG_BASE": str(folder / "log"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(folder / "enabled_plugins"),
        "RABBITMQ_CONFIG_FILE": str(folder / "rabbitmq"),
        "RABBITMQ_PID_FILE": str(folder / "rabbitmq.pid"),
    }
    with open(folder / "server.log", "w") as log:
        process = subprocess.Popen(
            [str(server)],
            env=env,
            cwd=folder,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"pyamqp://guest:guest@127.0.0.1:{port}//"
    try:
        _wait_for_broker(url, process, folder / "server.log")
        yield url
    finally:
        stop_group(process)
        if epmd := shutil.which("epmd"):
            subprocess.run([epmd, "-port", env["ERL_EPMD_PORT"], "-kill"], capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


def _wait_for_broker(url: str, process: subprocess.Popen, log: Path, timeout: float = 90) -> None:
    from kombu import Connection

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"rabbitmq-server exited ({process.returncode}): {log.read_text()[-2000:]}"
            )
        with contextlib.suppress(Exception), Connection(url, connect_timeout=2) as connection:
            connection.ensure_connection(max_retries=1)
            return
        time.sleep(0.5)
    raise TimeoutError(f"RabbitMQ did not accept connections within {timeout} s; see {log}")


def stop_group(process: subprocess.Popen, timeout: float = 60) -> None:
    """SIGTERM the process's group (it was started in a session of its own: a graceful
    stop), then SIGKILL."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()

"""The team deployment: a PostgreSQL-backed instance, the webserver and the daemon.

`brain-pipeline service` prepares an instance folder from `deploy/dagster.yaml`, checks that
PostgreSQL answers (naming the host, port and setting to change when it does not), creates
the database if it is absent, and runs `dagster-webserver` and `dagster-daemon` against it
until interrupted. The embedded SQLite instance of `brain-pipeline materialize` is untouched.
See docs/deploy.md.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from brain_pipeline.core.locations import REPO_ROOT

DEPLOY_CONFIG = REPO_ROOT / "deploy" / "dagster.yaml"
WORKSPACE = REPO_ROOT / "workspace.yaml"
PG_DEFAULTS = {
    "BRAIN_PIPELINE_PG_HOST": "127.0.0.1",
    "BRAIN_PIPELINE_PG_PORT": "5432",
    "BRAIN_PIPELINE_PG_USER": "postgres",
    "BRAIN_PIPELINE_PG_PASSWORD": "",
    "BRAIN_PIPELINE_PG_DB": "brain_pipeline",
}


class ServiceError(Exception):
    """A deployment problem, said in words a user can act on (never with the password)."""


@dataclass(frozen=True)
class PostgresSettings:
    host: str
    port: int
    user: str
    database: str
    password: str = field(default="", repr=False)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> PostgresSettings:
        env = with_pg_defaults(os.environ if environ is None else environ)
        try:
            port = int(env["BRAIN_PIPELINE_PG_PORT"])
        except ValueError:
            raise ServiceError(
                f"BRAIN_PIPELINE_PG_PORT must be a port number, not "
                f"{env['BRAIN_PIPELINE_PG_PORT']!r}"
            ) from None
        return cls(
            host=env["BRAIN_PIPELINE_PG_HOST"],
            port=port,
            user=env["BRAIN_PIPELINE_PG_USER"],
            database=env["BRAIN_PIPELINE_PG_DB"],
            password=env["BRAIN_PIPELINE_PG_PASSWORD"],
        )

    def connect(self, database: str | None = None):
        """A psycopg2 connection (autocommit), or a ServiceError that says what to change."""
        import psycopg2

        try:
            connection = psycopg2.connect(
                host=self.host,
                port=self.port,
                user=self.user,
                password=self.password,
                dbname=database or self.database,
                connect_timeout=5,
            )
        except psycopg2.OperationalError as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            if self.password:
                reason = reason.replace(self.password, "***")
            raise ServiceError(
                f"cannot reach PostgreSQL at {self.host}:{self.port} as user {self.user!r} "
                f"(database {database or self.database!r}): {reason}. Set "
                "BRAIN_PIPELINE_PG_HOST / BRAIN_PIPELINE_PG_PORT / BRAIN_PIPELINE_PG_USER / "
                "BRAIN_PIPELINE_PG_PASSWORD to a server that answers (docs/deploy.md)."
            ) from None
        connection.autocommit = True
        return connection


def with_pg_defaults(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment with every unset BRAIN_PIPELINE_PG_* variable at its default."""
    env = dict(environ)
    for name, value in PG_DEFAULTS.items():
        env.setdefault(name, value)
    return env


def ensure_database(settings: PostgresSettings) -> bool:
    """Create the instance database if it is absent; True if it was created."""
    from psycopg2 import sql

    connection = settings.connect("postgres")
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (settings.database,))
            if cursor.fetchone():
                return False
            name = sql.Identifier(settings.database)
            cursor.execute(sql.SQL("CREATE DATABASE {}").format(name))
        return True
    finally:
        connection.close()


def prepare_home(home: Path, config: Path = DEPLOY_CONFIG) -> Path:
    """The instance folder with its dagster.yaml (copied from `config` if it has none)."""
    if not config.is_file():
        raise ServiceError(f"instance config {config} does not exist (see deploy/dagster.yaml)")
    home = home.expanduser().resolve()
    home.mkdir(parents=True, exist_ok=True)
    target = home / "dagster.yaml"
    if not target.exists():
        shutil.copyfile(config, target)
    return home


def set_pool_limits(home: Path, environ: Mapping[str, str]) -> None:
    """Create the training pool's limit row before any run starts: two runs that create it
    at the same moment (from `concurrency.pools.default_limit`) collide in PostgreSQL."""
    import dagster as dg
    from dagster._core.instance.ref import InstanceRef

    from brain_pipeline.defs.executors import TRAINING_POOL

    saved = dict(os.environ)
    os.environ.update(environ)
    try:
        with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home))) as instance:
            instance.event_log_storage.set_concurrency_slots(TRAINING_POOL, 1)
    finally:
        os.environ.clear()
        os.environ.update(saved)


def service_commands(host: str, port: int, workspace: Path = WORKSPACE) -> list[list[str]]:
    """The webserver (bound to `host`) and the daemon, both loading `workspace`."""
    bin_dir = Path(sys.executable).parent
    return [
        [str(bin_dir / "dagster-webserver"), "-h", host, "-p", str(port), "-w", str(workspace)],
        [str(bin_dir / "dagster-daemon"), "run", "-w", str(workspace)],
    ]


def run_service(home: Path, host: str, port: int) -> int:
    """Check PostgreSQL, then run the webserver and the daemon until one stops or Ctrl-C."""
    settings = PostgresSettings.from_env()
    if ensure_database(settings):
        print(
            f"created database {settings.database!r} on {settings.host}:{settings.port}", flush=True
        )
    home = prepare_home(home)
    env = {**with_pg_defaults(os.environ), "DAGSTER_HOME": str(home)}
    set_pool_limits(home, env)
    processes = [subprocess.Popen(command, env=env) for command in service_commands(host, port)]
    print(f"instance {home}; UI at http://{host}:{port} (Ctrl-C stops both processes)", flush=True)
    stopping: list[int] = []
    # Handlers set explicitly: a shell that starts this in the background ignores SIGINT.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda received, _frame: stopping.append(received))
    died = None
    try:
        while not stopping and died is None:
            time.sleep(0.5)
            died = next((p for p in processes if p.poll() is not None), None)
    finally:
        _stop_all(processes, grace_seconds=30)
    if died is None or stopping:  # Ctrl-C or SIGTERM reaches the children too
        return 0
    # One of the two stopped on its own: say which and how, and exit non-zero so that a
    # supervisor (systemd, Kubernetes) restarts the service; queued runs wait in the run
    # storage for the next daemon.
    name = ("webserver", "daemon")[processes.index(died)]
    print(
        f"brain-pipeline service: the {name} (pid {died.pid}) {_how(died)}; stopped the "
        "other, exiting with status 1 so that a supervisor restarts the service",
        file=sys.stderr,
        flush=True,
    )
    return 1


def _how(process: subprocess.Popen) -> str:
    code = process.returncode
    if code is not None and code < 0:
        return f"was killed by {signal.Signals(-code).name}"
    return f"exited with status {code}"


def _stop_all(processes: list[subprocess.Popen], grace_seconds: float) -> None:
    """SIGTERM every process (both shut down cleanly on it), then SIGKILL what is left."""
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_seconds
    for process in processes:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

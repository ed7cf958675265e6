"""Where the steps of a run execute, chosen by `BRAIN_PIPELINE_EXECUTOR` when the definitions
load:

- `default`: Dagster's own (the multiprocess executor for runs launched from the UI or the
  daemon; `brain-pipeline materialize` runs in process);
- `celery`: every step is a Celery task (dagster-celery) on workers started with
  `brain-pipeline worker`; the training step goes to the `training` queue, so a worker with a
  GPU can take only those; broker `BRAIN_PIPELINE_CELERY_BROKER` (RabbitMQ by default);
- `k8s`: every step is a Kubernetes job (dagster-k8s), see docs/deploy.md.

Every worker must see the same artifacts root (`BRAIN_PIPELINE_ARTIFACTS_DIR`) and raw-data
root at the same path: a shared (NFS-style) mount.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import dagster as dg

EXECUTOR_ENV = "BRAIN_PIPELINE_EXECUTOR"
CELERY_BROKER_ENV = "BRAIN_PIPELINE_CELERY_BROKER"
# RabbitMQ on this machine; kombu supplies its default account when the URL names none.
DEFAULT_CELERY_BROKER = "pyamqp://127.0.0.1:5672//"
TRAINING_QUEUE = "training"
TRAINING_POOL = "training"
# The Celery queue and the concurrency pool of the training step (ignored by other executors).
TRAINING_OP_TAGS = {"dagster-celery/queue": TRAINING_QUEUE}
K8S_PASSED_ENV = [
    "BRAIN_PIPELINE_DATA_DIR",
    "BRAIN_PIPELINE_ARTIFACTS_DIR",
    "BRAIN_PIPELINE_PG_HOST",
    "BRAIN_PIPELINE_PG_PORT",
    "BRAIN_PIPELINE_PG_USER",
    "BRAIN_PIPELINE_PG_PASSWORD",
    "BRAIN_PIPELINE_PG_DB",
]
K8S_ARTIFACTS_CLAIM = "brain-pipeline-artifacts"
K8S_ARTIFACTS_MOUNT = "/artifacts"


def celery_broker(environ: Mapping[str, str]) -> str | dict:
    """The broker setting: an env reference when the URL is given (so a password in it never
    appears in the job's snapshot), else the local default."""
    return {"env": CELERY_BROKER_ENV} if environ.get(CELERY_BROKER_ENV) else DEFAULT_CELERY_BROKER


def executor_from_env(environ: Mapping[str, str] | None = None) -> dg.ExecutorDefinition | None:
    """The executor named by BRAIN_PIPELINE_EXECUTOR; None keeps Dagster's default."""
    environ = os.environ if environ is None else environ
    name = environ.get(EXECUTOR_ENV, "default").strip().lower() or "default"
    if name == "default":
        return None
    if name == "celery":
        from dagster_celery import celery_executor

        return celery_executor.configured(
            {"broker": celery_broker(environ), "backend": "rpc://"}, name="celery"
        )
    if name == "k8s":
        from dagster_k8s import k8s_job_executor

        return k8s_job_executor.configured(
            {
                "env_vars": K8S_PASSED_ENV,
                "volumes": [
                    {
                        "name": "artifacts",
                        "persistent_volume_claim": {"claim_name": K8S_ARTIFACTS_CLAIM},
                    }
                ],
                "volume_mounts": [{"name": "artifacts", "mount_path": K8S_ARTIFACTS_MOUNT}],
            },
            name="k8s",
        )
    raise ValueError(f"{EXECUTOR_ENV}={name!r} is not one of: default, celery, k8s")

"""The Celery app that `brain-pipeline worker` runs: dagster-celery's step tasks on the
broker named by BRAIN_PIPELINE_CELERY_BROKER (default: RabbitMQ on 127.0.0.1).

A worker executes the steps the `celery` executor sends (defs/executors.py). It loads the
code location itself, so it needs the same BRAIN_PIPELINE_DATA_DIR and
BRAIN_PIPELINE_ARTIFACTS_DIR as the runs, and the instance's BRAIN_PIPELINE_PG_* settings.
"""

from __future__ import annotations

import os

from dagster_celery.executor import CeleryExecutor
from dagster_celery.make_app import make_app
from dagster_celery.tasks import create_execute_job_task, create_resume_job_task, create_task

from brain_pipeline.defs.executors import CELERY_BROKER_ENV, DEFAULT_CELERY_BROKER

app = make_app(
    CeleryExecutor.for_cli(
        broker=os.environ.get(CELERY_BROKER_ENV) or DEFAULT_CELERY_BROKER, backend="rpc://"
    ).app_args()
)
execute_plan = create_task(app)
execute_job = create_execute_job_task(app)
resume_job = create_resume_job_task(app)

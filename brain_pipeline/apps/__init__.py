"""The entry points people and services use: the `brain-pipeline` CLI (`cli`) and the run
console it prints (`console`), the HTTP prediction service (`api`), the deployment
(`service`: PostgreSQL, daemon, webserver) and its Celery workers (`celery_app`), and the
model table and promotion of `brain-pipeline models` (`models_report`).

They drive the Dagster code location (`brain_pipeline.definitions`) and the core; nothing in
`core/` or `defs/` imports them.
"""

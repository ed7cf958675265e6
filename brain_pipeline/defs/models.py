"""Which model serves: the leaderboard of every evaluated version, the champion/challenger
decision, and the champion's model card.

These three are not partitioned: each reads every configuration's evaluations. The
decisions live in an append-only history (core/model/promotion.py) under the artifacts
root, which `predict`, `explain` and `brain-pipeline models` read too.
"""

import hashlib
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd

from brain_pipeline.core import artifact_names, plots
from brain_pipeline.core.artifacts import (
    read_json,
    write_bytes,
    write_json,
    write_parquet,
    write_provenance,
)
from brain_pipeline.core.classes import TARGET_CLASSES
from brain_pipeline.core.lineage import provenance_chain
from brain_pipeline.core.model import card as model_cards
from brain_pipeline.core.model import integrity
from brain_pipeline.core.model.external import headline, results_for_version
from brain_pipeline.core.model.leaderboard import leaderboard_table, model_entry
from brain_pipeline.core.model.promotion import (
    DEFAULT_MARGIN,
    Comparison,
    Decision,
    PromotionHistory,
    PromotionRecord,
    compare_on_common_images,
    decide,
)
from brain_pipeline.defs.emissions import emissions_record
from brain_pipeline.defs.evaluation import model_evaluation
from brain_pipeline.defs.external import external_evaluation
from brain_pipeline.defs.resources import PipelineStorage
from brain_pipeline.defs.support import (
    ArtifactStep,
    UpstreamArtifact,
    markdown_table,
    record_provenance,
    upstream_artifact,
)

BOARD_COLUMNS = [
    "model_version",
    "f1_macro",
    "f1_macro_low",
    "f1_macro_high",
    "accuracy",
    "within_source_healthy_vs_alzheimer",
    "expected_calibration_error",
    "train_seconds",
    "energy_kwh",
    "co2_g",
    "on_pareto_front",
    "gain_f1_per_g_co2",
    "external",
]


def promotion_history(storage: PipelineStorage) -> PromotionHistory:
    return PromotionHistory(storage.shared_dir(artifact_names.MODEL_REGISTRY))


def evaluation_folders(instance: dg.DagsterInstance) -> list[Path]:
    """Every model_evaluation folder on record whose files still exist, oldest first (a
    reused result points at the folder that computed it, so each folder comes once)."""
    folders: dict[Path, None] = {}
    cursor = None
    while True:
        result = instance.fetch_materializations(
            dg.AssetKey("model_evaluation"), limit=1000, cursor=cursor, ascending=True
        )
        for record in result.records:
            path = record.asset_materialization.metadata.get("path")
            if path is not None and Path(str(path.value)).is_file():
                folders[Path(str(path.value)).parent] = None
        if not result.has_more:
            return list(folders)
        cursor = result.cursor


def current_leaderboard(instance: dg.DagsterInstance) -> pd.DataFrame:
    return leaderboard_table(model_entry(folder) for folder in evaluation_folders(instance))


@dg.asset(
    deps=[model_evaluation, emissions_record, external_evaluation],
    group_name="model",
    code_version="3",
    kinds={"parquet"},
)
def leaderboard(
    context: dg.AssetExecutionContext, storage: PipelineStorage
) -> dg.MaterializeResult:
    """Every evaluated model version: quality, calibration, training time, kWh and CO2eq; the
    Pareto front of macro-F1 against CO2, and macro-F1 gained per extra gram."""
    folders = evaluation_folders(context.instance)
    external = sorted(Path(storage.artifacts_dir, "external_evaluation").glob("*/*/external.json"))
    # The set of evaluations (external ones too) is this asset's input: a new one is a new
    # leaderboard.
    digest = hashlib.sha256("\n".join(map(str, [*folders, *external])).encode()).hexdigest()[:16]
    step = ArtifactStep(
        context, storage, config={}, upstream_versions={"evaluations": digest}, reads_deps=False
    )
    if reused := step.reused():
        return reused
    table = leaderboard_table(model_entry(folder) for folder in folders)
    table["external"] = [external_summary(storage, v) for v in table["model_version"]]
    path = write_parquet(step.folder / artifact_names.LEADERBOARD, table)
    cheapest = table[table["on_pareto_front"]].sort_values("co2_g").head(1)
    return step.result(
        {
            "path": dg.MetadataValue.path(str(path)),
            "n_model_versions": len(table),
            "best_model_version": table["model_version"].iloc[0] if len(table) else "none",
            "best_macro_f1": float(table["f1_macro"].iloc[0]) if len(table) else "none",
            "cheapest_on_front": cheapest["model_version"].iloc[0] if len(cheapest) else "none",
            "leaderboard": markdown_table(table[BOARD_COLUMNS].set_index("model_version")),
            "pareto_front": step.figure("pareto_front.png", plots.pareto_plot(table)),
        },
        provenance={"model_versions": table["model_version"].tolist()},
    )


def external_summary(storage: PipelineStorage, version: str) -> str:
    """`dataset: question estimate [low, high]` per external dataset ("" if none scored)."""
    result = results_for_version(Path(storage.artifacts_dir), version) or {}
    return " | ".join(f"{name}: {headline(r)}" for name, r in result.get("datasets", {}).items())


class ChampionConfig(dg.Config):
    """How the newest candidate is judged against the serving champion."""

    # Promote unless the challenger's macro-F1 is lower than the champion's by more than this.
    margin: float = DEFAULT_MARGIN
    # Promote whatever the comparison says (recorded as an override).
    force: bool = False
    # A model version to judge instead of the newest one (see `brain-pipeline models`).
    challenger: str | None = None


def _challenger_row(context, board: pd.DataFrame, config: ChampionConfig) -> pd.Series:
    """The version named in config, else the one this run evaluated, else the newest."""
    if config.challenger:
        rows = board[board["model_version"] == config.challenger]
        if rows.empty:
            raise dg.Failure(f"challenger {config.challenger!r} is not on the leaderboard")
        return rows.iloc[0]
    in_run = [
        str(entry.asset_materialization.metadata["model_version"].value)
        for entry in context.instance.all_logs(
            context.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
        )
        if entry.asset_materialization.asset_key == dg.AssetKey("model_evaluation")
    ]
    rows = board[board["model_version"].isin(in_run)]
    newest = rows if len(rows) else board
    return newest.sort_values("trained_at").iloc[-1]


def failed_blocking_checks(instance: dg.DagsterInstance, artifact: Path) -> list[str]:
    """Blocking checks that failed on any materialization in the artifact's lineage (each
    step's check evaluations in the run that recorded it)."""
    failed = []
    steps = provenance_chain(artifact)
    for run_id in {step["run_id"] for step in steps}:
        keys = {step["asset_key"] for step in steps if step["run_id"] == run_id}
        for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION):
            evaluation = entry.dagster_event.event_specific_data
            key = evaluation.asset_key.to_user_string()
            if key in keys and evaluation.blocking and not evaluation.passed:
                failed.append(f"{key}:{evaluation.check_name}")
    return sorted(set(failed))


def _judge(
    context, challenger: pd.Series, champion: dict | None, config: ChampionConfig
) -> tuple[Comparison, Decision]:
    predictions = Path(challenger["evaluation_path"]).parent / artifact_names.PREDICTIONS
    failed = failed_blocking_checks(context.instance, Path(challenger["evaluation_path"]))
    if champion is None:
        nothing = Comparison(0, None, None)
        if failed:  # even the first model must have a sound lineage
            return nothing, decide(nothing, failed_blocking_checks=failed)
        return nothing, Decision("promoted", "no champion yet")
    champion_predictions = Path(champion["evaluation_path"]).parent / artifact_names.PREDICTIONS
    comparison = compare_on_common_images(
        pd.read_parquet(champion_predictions), pd.read_parquet(predictions), TARGET_CLASSES
    )
    return comparison, decide(comparison, margin=config.margin, failed_blocking_checks=failed)


def serving_evaluation(line: dict[str, Any]) -> UpstreamArtifact:
    """The serving version's evaluation, as the upstream artifact of a decision: the lineage
    of a decision (and of the model card) runs through it to the raw data."""
    path = Path(line["evaluation_path"])
    run_id = read_json(path.parent / artifact_names.PROVENANCE)["run_id"]
    return UpstreamArtifact("model_evaluation", path, run_id, None)


def decision_metadata(line: dict[str, Any]) -> dict[str, Any]:
    """The champion_model metadata of one history line."""
    return {
        "champion_version": line["serving_version"],
        "challenger_version": line["challenger_version"],
        "decision": line["decision"],
        "decision_kind": line["kind"],
        "champion_macro_f1": line["champion_macro_f1"],
        "challenger_macro_f1": line["challenger_macro_f1"],
        "comparison_images": line["comparison_images"],
        "reason": line["reason"],
        "previous_champion": line["champion_version"],
        "model_path": dg.MetadataValue.path(line["model_path"]),
    }


def _decide_and_record(
    context, history: PromotionHistory, challenger: pd.Series, config: ChampionConfig
) -> dict[str, Any]:
    """Judge the challenger against the serving champion and append the decision, under the
    history's lock: two runs deciding at once decide one after the other."""
    with history.locked():
        champion = history.champion()
        version = challenger["model_version"]
        if champion and champion["serving_version"] == version and not config.force:
            return {**champion, "decision": "kept", "reason": "the newest model is the champion"}
        comparison, decision = _judge(context, challenger, champion, config)
        if config.force:
            decision = Decision("promoted", f"forced (force: true); {decision.reason}")
        # Not even `force` promotes files that are no longer what training wrote.
        if (files := integrity.check(Path(challenger["model_path"]).parent)).status != "intact":
            failed = f"its files fail verification: {files.describe()}"
            kept = decision.decision == "kept"
            decision = Decision("kept", f"{decision.reason}; {failed}" if kept else failed)
        serving = challenger if decision.decision == "promoted" else champion
        return history.append(
            PromotionRecord(
                champion_version=champion["serving_version"] if champion else None,
                challenger_version=version,
                decision=decision.decision,
                reason=decision.reason,
                kind="override" if config.force else "automatic",
                champion_macro_f1=comparison.champion_macro_f1,
                challenger_macro_f1=comparison.challenger_macro_f1,
                comparison_images=comparison.comparison_images,
                model_path=serving["model_path"] if serving is not None else "",
                evaluation_path=serving["evaluation_path"] if serving is not None else "",
                run_id=context.run_id,
            )
        )


@dg.asset(deps=[leaderboard], group_name="model", code_version="2", kinds={"json"})
def champion_model(
    context: dg.AssetExecutionContext, config: ChampionConfig, storage: PipelineStorage
) -> dg.MaterializeResult:
    """Whether the newest model replaces the serving champion, and why."""
    board = pd.read_parquet(upstream_artifact(context, "leaderboard").path)
    if board.empty:
        raise dg.Failure("the leaderboard is empty: materialize model_evaluation first")
    challenger = _challenger_row(context, board, config)
    line = _decide_and_record(context, promotion_history(storage), challenger, config)
    if not line["serving_version"]:  # recorded in the history; no version serves
        raise dg.Failure(
            f"no champion: {line['challenger_version']} was kept out: {line['reason']}"
        )
    folder = storage.run_dir("champion_model", context.run_id)
    path = write_json(folder / artifact_names.DECISION, line)
    record_provenance(
        context,
        folder,
        config=config.model_dump(),
        upstream=[upstream_artifact(context, "leaderboard"), serving_evaluation(line)],
    )
    context.log.info(f"champion: {line['serving_version']} ({line['decision']}: {line['reason']})")
    return dg.MaterializeResult(
        metadata={**decision_metadata(line), "path": dg.MetadataValue.path(str(path))},
        # Downstream (the model card) is stale exactly when the serving version changes.
        data_version=dg.DataVersion(line["serving_version"]),
    )


def record_manual_promotion(
    instance: dg.DagsterInstance, storage: PipelineStorage, version: str
) -> dict[str, Any]:
    """`brain-pipeline models promote VERSION`: make a version the champion by hand (a
    rollback or roll-forward), recorded in the history and as a champion_model event."""
    board = current_leaderboard(instance)
    rows = board[board["model_version"] == version]
    if rows.empty:
        known = ", ".join(board["model_version"]) or "none"
        raise ValueError(f"no evaluated model version {version!r}; known: {known}")
    row, history = rows.iloc[0], promotion_history(storage)
    integrity.verify(Path(row["model_path"]).parent, require_record=True)
    with history.locked():
        champion = history.champion()
        line = history.append(
            PromotionRecord(
                champion_version=champion["serving_version"] if champion else None,
                challenger_version=version,
                decision="promoted",
                reason="promoted by hand (brain-pipeline models promote)",
                kind="manual",
                challenger_macro_f1=float(row["f1_macro"]),
                model_path=row["model_path"],
                evaluation_path=row["evaluation_path"],
            )
        )
    folder = storage.run_dir("champion_model", "manual")
    path = write_json(folder / artifact_names.DECISION, line)
    write_provenance(
        folder,
        {
            "asset_key": "champion_model",
            "run_id": "manual",
            "config": {"promote": version},
            "upstream": [serving_evaluation(line).as_record()],
        },
    )
    instance.report_runless_asset_event(
        dg.AssetMaterialization(
            asset_key="champion_model",
            metadata={**decision_metadata(line), "path": dg.MetadataValue.path(str(path))},
            tags={"dagster/data_version": version},
        )
    )
    return line


def _gallery_scores(instance: dg.DagsterInstance, version: str, configuration: str) -> dict:
    """The Grad-CAM scores of this model version's newest gallery, if it has one."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(
            asset_key=dg.AssetKey("gradcam_gallery"), asset_partitions=[configuration]
        ),
        limit=50,
    ).records
    for record in records:
        metadata = record.asset_materialization.metadata
        path = Path(str(metadata["path"].value)) if "path" in metadata else None
        same = metadata.get("model_version") and metadata["model_version"].value == version
        if same and path is not None and path.is_file():
            return read_json(path)
    return {}


@dg.asset(deps=[champion_model], group_name="model", code_version="2", kinds={"markdown"})
def model_card(context: dg.AssetExecutionContext, storage: PipelineStorage) -> dg.MaterializeResult:
    """The champion's model card (Mitchell et al. 2019): Markdown here, a JSON twin beside it."""
    history = promotion_history(storage)
    champion = history.champion()
    if champion is None:
        raise dg.Failure("no champion yet: materialize champion_model first")
    champion = history.promotion_of(champion["serving_version"]) or champion
    model_path, evaluation_path = Path(champion["model_path"]), Path(champion["evaluation_path"])
    training = read_json(model_path.parent / artifact_names.TRAINING)
    lineage = provenance_chain(model_path)  # read once: the splits' folder and the card's
    splits_path = next(
        Path(step["folder"]) / artifact_names.SPLITS
        for step in lineage
        if step["asset_key"] == "dataset_splits"
    )
    scores = _gallery_scores(context.instance, training["model_version"], training["configuration"])
    card = model_cards.build_card(
        champion=champion,
        training=training,
        metrics=read_json(evaluation_path),
        splits=pd.read_parquet(splits_path),
        explanation={k: v for k, v in scores.items() if not isinstance(v, (list, dict))} or None,
        energy=model_cards.energy_section(
            {"training": model_path.parent, "evaluation": evaluation_path.parent}
        ),
        lineage=lineage,
        external=(
            results_for_version(Path(storage.artifacts_dir), training["model_version"]) or {}
        ).get("datasets"),
    )
    markdown = model_cards.render_markdown(card)
    folder = storage.run_dir("model_card", context.run_id)
    write_json(folder / artifact_names.MODEL_CARD_JSON, card)
    path = write_bytes(folder / artifact_names.MODEL_CARD, markdown.encode())
    record_provenance(
        context, folder, config={}, upstream=[upstream_artifact(context, "champion_model")]
    )
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(str(path)),
            "model_version": training["model_version"],
            "model_card": dg.MetadataValue.md(markdown),
        },
        data_version=dg.DataVersion(training["model_version"]),
    )

"""Train / validation / test splits that are group-aware and stable under additions.

An image's split is a pure function of its near-duplicate group key and a salt: the group key
is hashed to a number in [0, 1) and compared with the cumulative split fractions. It does not
depend on which other files exist, so adding or removing images never moves an existing image
to another split, and a group (one subject, one set of copies) never spans two splits.
Because every class draws its groups from the same uniform hash, each class is split in the
requested proportions in expectation (stratified), which holds closely once a class has more
than a few dozen groups.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import pandas as pd

SPLITS: tuple[str, ...] = ("train", "val", "test")


def group_position(group_id: str, salt: str) -> float:
    """Map a group key to a uniform number in [0, 1), deterministically."""
    digest = hashlib.sha256(f"{salt}\0{group_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_for_position(position: float, val_fraction: float, test_fraction: float) -> str:
    if position < test_fraction:
        return "test"
    if position < test_fraction + val_fraction:
        return "val"
    return "train"


def split_rows(table: pd.DataFrame, split: str) -> pd.DataFrame:
    """The rows of one split, in table order, numbered from 0."""
    if split not in SPLITS:
        raise ValueError(f"split {split!r} is not one of {SPLITS}")
    return table[table["split"] == split].reset_index(drop=True)


@dataclass(frozen=True)
class SplitSettings:
    """How images are split; `defs.ingestion.SplitConfig` mirrors these defaults."""

    salt: str = "brain_pipeline"
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    # The study's protocol: this many test images per class (test_fraction is then unused).
    test_images_per_class: int | None = None


def split_index(index: pd.DataFrame, settings: SplitSettings) -> pd.DataFrame:
    """Add a `split` column by near-duplicate group, as `settings` asks."""
    if settings.test_images_per_class:
        return assign_fixed_test_count(
            index,
            salt=settings.salt,
            test_per_class=settings.test_images_per_class,
            val_fraction=settings.val_fraction,
        )
    return assign_splits(
        index,
        salt=settings.salt,
        val_fraction=settings.val_fraction,
        test_fraction=settings.test_fraction,
    )


def assign_splits(
    index: pd.DataFrame, *, salt: str, val_fraction: float = 0.15, test_fraction: float = 0.15
) -> pd.DataFrame:
    """Add a `split` column to the index (which must carry `group_id`)."""
    if not 0 < val_fraction < 1 or not 0 < test_fraction < 1:
        raise ValueError("val_fraction and test_fraction must each lie strictly between 0 and 1")
    if val_fraction + test_fraction >= 1:
        raise ValueError(
            f"val_fraction + test_fraction = {val_fraction + test_fraction:.2f} leaves no "
            "training data; keep their sum below 1"
        )
    if "group_id" not in index.columns:
        raise ValueError("the index has no `group_id` column; build it with build_balanced_index")
    positions = index["group_id"].map(lambda group: group_position(group, salt))
    result = index.copy()
    result["split"] = [split_for_position(p, val_fraction, test_fraction) for p in positions]
    return result


def assign_fixed_test_count(
    index: pd.DataFrame, *, salt: str, test_per_class: int, val_fraction: float = 0.15
) -> pd.DataFrame:
    """The study's protocol: a fixed number of test images per class, the rest train / val.

    Groups are taken in the order of their hash position, whole, until each class has at least
    `test_per_class` test images; validation then takes `val_fraction` of what remains the
    same way. Still group-aware and seeded by the salt.
    """
    if test_per_class < 1:
        raise ValueError("test_per_class must be at least 1")
    result = index.copy()
    result["split"] = "train"
    positions = result["group_id"].map(lambda group: group_position(group, salt))
    for _, members in result.assign(_position=positions).groupby("target_class"):
        groups = members.groupby("group_id")["_position"].first().sort_values().index
        sizes = members["group_id"].value_counts()
        if sizes.sum() <= test_per_class:
            raise ValueError(
                f"class {members['target_class'].iloc[0]!r} has {sizes.sum()} images, not more "
                f"than test_per_class={test_per_class}; lower it"
            )
        taken, val_target = 0, None
        for group in groups:
            if taken < test_per_class:
                result.loc[result["group_id"] == group, "split"] = "test"
                taken += int(sizes[group])
                continue
            if val_target is None:
                val_target, val_taken = val_fraction * (sizes.sum() - taken), 0
            if val_taken < val_target:
                result.loc[result["group_id"] == group, "split"] = "val"
                val_taken += int(sizes[group])
    return result


@dataclass
class SplitChanges:
    """What inheriting the previous assignment did."""

    inherited_groups: int = 0
    bridging_groups: int = 0
    moved_images: list[dict] = field(default_factory=list)


def keep_previous_assignment(
    table: pd.DataFrame, previous: pd.DataFrame | None
) -> tuple[pd.DataFrame, SplitChanges]:
    """Keep yesterday's split for every image that had one.

    A group whose images were all in one split keeps that split (even if a new member changed
    its group key). A new image that joins groups from different splits merges them; the
    merged group goes to the split most of its previously assigned images held (ties: test,
    then val, then train, so the test set loses nothing), and the images that move are
    reported.
    """
    changes = SplitChanges()
    if previous is None or previous.empty:
        return table, changes
    before = previous.drop_duplicates("sha256").set_index("sha256")["split"]
    result = table.copy()
    result["_previous"] = result["sha256"].map(before)
    preference = {name: rank for rank, name in enumerate(("test", "val", "train"))}
    for group, members in result.groupby("group_id"):
        held = members["_previous"].dropna()
        if held.empty:
            continue
        counts = held.value_counts()
        chosen = min(counts.index, key=lambda split: (-counts[split], preference[split]))
        changes.inherited_groups += 1
        if len(counts) > 1:
            changes.bridging_groups += 1
            for _, row in members[members["_previous"].notna()].iterrows():
                if row["_previous"] != chosen:
                    changes.moved_images.append(
                        {
                            "sha256": row["sha256"],
                            "from": row["_previous"],
                            "to": chosen,
                            "group_id": group,
                        }
                    )
        result.loc[members.index, "split"] = chosen
    return result.drop(columns="_previous"), changes


def leakage_report(splits: pd.DataFrame) -> dict[str, int]:
    """How many contents / groups / named subjects appear in more than one split (all must
    be 0)."""
    contents = splits.groupby("sha256")["split"].nunique()
    groups = splits.groupby("group_id")["split"].nunique()
    named = (
        splits[["subjects", "split"]].explode("subjects").dropna()
        if "subjects" in splits
        else pd.DataFrame(columns=["subjects", "split"])
    )
    subjects = named.groupby("subjects")["split"].nunique()
    return {
        "contents_in_several_splits": int((contents > 1).sum()),
        "groups_in_several_splits": int((groups > 1).sum()),
        "subjects_in_several_splits": int((subjects > 1).sum()),
    }


def split_class_counts(splits: pd.DataFrame) -> pd.DataFrame:
    """Images per split and class, splits as rows in train/val/test order."""
    table = pd.crosstab(splits["split"], splits["target_class"])
    return table.reindex([s for s in SPLITS if s in table.index])

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


def leakage_report(splits: pd.DataFrame) -> dict[str, int]:
    """How many contents / groups appear in more than one split (both must be 0)."""
    contents = splits.groupby("sha256")["split"].nunique()
    groups = splits.groupby("group_id")["split"].nunique()
    return {
        "contents_in_several_splits": int((contents > 1).sum()),
        "groups_in_several_splits": int((groups > 1).sum()),
    }


def split_class_counts(splits: pd.DataFrame) -> pd.DataFrame:
    """Images per split and class, splits as rows in train/val/test order."""
    table = pd.crosstab(splits["split"], splits["target_class"])
    return table.reindex([s for s in SPLITS if s in table.index])

"""Exact/near duplicates, balancing, and splits that never leak and never move."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from brain_pipeline.core.data.dedup import (
    IndexSettings,
    build_balanced_index,
    near_duplicate_groups,
    thumbnail_matrix,
)
from brain_pipeline.core.data.splits import (
    SplitSettings,
    assign_splits,
    leakage_report,
    split_index,
    split_rows,
)


def _thumb(seed: int, noise: float = 0.0, base_seed: int | None = None) -> bytes:
    rng = np.random.default_rng(base_seed if base_seed is not None else seed)
    base = rng.integers(0, 255, 32 * 32).astype(float)
    jitter = np.random.default_rng(seed + 10_000).normal(0, noise, 32 * 32)
    return np.clip(base + jitter, 0, 255).astype(np.uint8).tobytes()


def _row(path: str, target: str, content: str, thumb: bytes, dataset: str = "d") -> dict:
    return {
        "dataset": dataset,
        "path": path,
        "source_label": "x",
        "target_class": target,
        "sha256": hashlib.sha256(content.encode()).hexdigest(),
        "status": "ok",
        "thumbnail": thumb,
    }


def test_exact_copies_collapse_and_conflicts_are_excluded() -> None:
    manifest = pd.DataFrame(
        [
            _row("a.jpg", "tumor_brain", "A", _thumb(1)),
            _row("copy_of_a.jpg", "tumor_brain", "A", _thumb(1), dataset="other"),
            _row("b.jpg", "healthy_brain", "B", _thumb(2)),
            _row("c_as_tumor.jpg", "tumor_brain", "C", _thumb(3)),
            _row("c_as_healthy.jpg", "healthy_brain", "C", _thumb(3)),
            _row("d.jpg", "alzheimer_brain", "D", _thumb(4)),
        ]
    )
    index, conflicts, report, _, *_ = build_balanced_index(
        manifest, IndexSettings(detect_resaved_copies=False, balance_classes=False)
    )
    assert len(index) == 3
    assert sorted(index.set_index("path").loc["a.jpg", "sources"]) == [
        "d/a.jpg",
        "other/copy_of_a.jpg",
    ]
    assert len(index.set_index("path").loc["a.jpg", "source_labels"]) == 2
    assert len(conflicts) == 1 and report.n_conflicting_contents == 1
    assert report.n_exact_duplicate_files == 1


def test_near_duplicates_share_a_group_and_balancing_downsamples() -> None:
    rows = [
        _row(f"s{i}.jpg", "alzheimer_brain", f"s{i}", _thumb(i, 3.0, base_seed=7)) for i in range(4)
    ]
    rows += [_row(f"h{i}.jpg", "healthy_brain", f"h{i}", _thumb(100 + i)) for i in range(3)]
    rows += [_row(f"t{i}.jpg", "tumor_brain", f"t{i}", _thumb(200 + i)) for i in range(2)]
    unbalanced, _, report, _, *_ = build_balanced_index(
        pd.DataFrame(rows), IndexSettings(detect_resaved_copies=False, balance_classes=False)
    )
    groups = unbalanced.set_index("path")["group_id"]
    assert groups[["s0.jpg", "s1.jpg", "s2.jpg", "s3.jpg"]].nunique() == 1
    assert groups[["h0.jpg", "h1.jpg", "h2.jpg"]].nunique() == 3
    assert report.largest_group_size == 4
    balanced, _, report, _, *_ = build_balanced_index(
        pd.DataFrame(rows), IndexSettings(detect_resaved_copies=False)
    )
    assert report.counts_after_balancing == {
        "alzheimer_brain": 2,
        "healthy_brain": 2,
        "tumor_brain": 2,
    }


def test_grouping_is_transitive_and_ignores_flat_images() -> None:
    # cos(7 deg) = 0.9925 links neighbours; cos(14 deg) = 0.970 alone would not.
    angles = np.radians([0.0, 7.0, 14.0, 90.0])
    vectors = np.zeros((5, 4), dtype=np.float32)
    vectors[:4, 0], vectors[:4, 1] = np.cos(angles), np.sin(angles)
    labels = near_duplicate_groups(vectors, 0.99)  # row 4 is a flat (all-zero) image
    assert labels[0] == labels[1] == labels[2]
    assert len({labels[0], labels[3], labels[4]}) == 3
    flat = thumbnail_matrix(pd.Series([bytes([9]) * 1024]))
    assert not flat.any()


group_ids = st.lists(
    st.text("abcdef0123456789", min_size=4, max_size=12), min_size=1, max_size=60, unique=True
)


@settings(max_examples=60, deadline=None)
@given(existing=group_ids, added=group_ids, salt=st.text(max_size=8))
def test_adding_groups_never_moves_existing_ones(existing, added, salt) -> None:
    before = pd.DataFrame(
        {"group_id": existing, "sha256": existing, "target_class": "healthy_brain"}
    )
    grown = pd.concat(
        [before, pd.DataFrame({"group_id": added, "sha256": added, "target_class": "x"})]
    )
    grown = grown.drop_duplicates("group_id").sample(frac=1.0, random_state=0)
    first = assign_splits(before, salt=salt).set_index("group_id")["split"]
    second = assign_splits(grown, salt=salt).set_index("group_id")["split"]
    assert (second[first.index] == first).all()


@settings(max_examples=40, deadline=None)
@given(sizes=st.lists(st.integers(1, 6), min_size=1, max_size=40), salt=st.text(max_size=8))
def test_no_group_spans_two_splits(sizes, salt) -> None:
    rows = [
        {"group_id": f"g{g}", "sha256": f"g{g}_{i}", "target_class": "tumor_brain"}
        for g, size in enumerate(sizes)
        for i in range(size)
    ]
    table = assign_splits(pd.DataFrame(rows), salt=salt)
    assert leakage_report(table) == {
        "contents_in_several_splits": 0,
        "groups_in_several_splits": 0,
        "subjects_in_several_splits": 0,
    }


def test_split_fractions_are_close_per_class_on_many_groups() -> None:
    rows = [
        {"group_id": f"{c}{i}", "sha256": f"{c}{i}", "target_class": c}
        for c in ("healthy_brain", "tumor_brain", "alzheimer_brain")
        for i in range(3000)
    ]
    table = assign_splits(pd.DataFrame(rows), salt="s", val_fraction=0.15, test_fraction=0.15)
    shares = pd.crosstab(table["target_class"], table["split"], normalize="index")
    assert np.allclose(shares["test"], 0.15, atol=0.03)
    assert np.allclose(shares["val"], 0.15, atol=0.03)


def _table(rows):
    return pd.DataFrame(rows, columns=["sha256", "group_id", "target_class"])


@settings(max_examples=60, deadline=None)
@given(
    n_groups=st.integers(2, 30),
    joins=st.lists(st.integers(0, 29), max_size=10),
    salt=st.text(max_size=6),
)
def test_new_images_joining_a_group_never_move_existing_images(n_groups, joins, salt) -> None:
    from brain_pipeline.core.data.splits import keep_previous_assignment

    old = _table([(f"s{g}", f"g{g}", "tumor_brain") for g in range(n_groups)])
    yesterday = assign_splits(old, salt=salt)
    # New images join existing groups; their arrival renames the group (a new smallest hash).
    grown = old.copy()
    for k, g in enumerate(j % n_groups for j in joins):
        grown.loc[grown["group_id"] == f"g{g}", "group_id"] = f"a{k}_{g}"
        grown.loc[len(grown)] = (f"new{k}", f"a{k}_{g}", "tumor_brain")
    today, changes = keep_previous_assignment(assign_splits(grown, salt=salt), yesterday)
    merged = today.set_index("sha256")["split"]
    assert (merged[yesterday["sha256"]].to_numpy() == yesterday["split"].to_numpy()).all()
    assert changes.moved_images == []
    assert leakage_report(today)["groups_in_several_splits"] == 0


def test_a_bridge_between_splits_is_resolved_toward_test_and_reported() -> None:
    from brain_pipeline.core.data.splits import keep_previous_assignment

    yesterday = pd.DataFrame(
        {
            "sha256": ["a", "b", "c"],
            "group_id": ["ga", "gb", "gc"],
            "split": ["test", "train", "train"],
        }
    )
    # A new image "n" is a near-duplicate of a (test) and b (train): one group now.
    today = _table(
        [
            ("a", "gx", "healthy_brain"),
            ("b", "gx", "healthy_brain"),
            ("n", "gx", "healthy_brain"),
            ("c", "gc", "healthy_brain"),
        ]
    )
    today, changes = keep_previous_assignment(assign_splits(today, salt="s"), yesterday)
    splits_now = today.set_index("sha256")["split"]
    assert splits_now["a"] == splits_now["b"] == splits_now["n"] == "test"  # tie -> test
    assert splits_now["c"] == "train"
    assert changes.bridging_groups == 1
    assert changes.moved_images == [
        {"sha256": "b", "from": "train", "to": "test", "group_id": "gx"}
    ]


def test_fixed_test_count_protocol_takes_whole_groups() -> None:
    from brain_pipeline.core.data.splits import assign_fixed_test_count

    rows = [
        (f"{c}{g}_{i}", f"{c}{g}", c)
        for c in ("healthy_brain", "tumor_brain")
        for g in range(40)
        for i in range(1 + g % 3)
    ]
    table = assign_fixed_test_count(_table(rows), salt="s", test_per_class=20)
    counts = table[table["split"] == "test"]["target_class"].value_counts()
    assert ((counts >= 20) & (counts <= 22)).all()  # whole groups: may overshoot by < a group
    assert leakage_report(table)["groups_in_several_splits"] == 0
    assert (table["split"] == "val").any()


def test_cross_split_check_finds_a_near_copy_that_group_ids_missed() -> None:
    from brain_pipeline.core.data.dedup import cross_split_near_duplicates

    thumbs = pd.Series(
        {"a": _thumb(1), "a_resized": _thumb(2, 2.0, base_seed=1), "b": _thumb(3), "c": _thumb(4)}
    )
    contents = thumbs.to_frame("thumbnail")
    table = pd.DataFrame(
        {"sha256": ["a", "a_resized", "b", "c"], "split": ["train", "test", "test", "val"]}
    )
    found = cross_split_near_duplicates(table, contents, resaved_similarity=None)
    assert found == {"thumbnail_twins": 1, "resaved_copies": 0, "held_out_with_a_near_duplicate": 1}
    table.loc[1, "split"] = "train"
    found = cross_split_near_duplicates(table, contents, resaved_similarity=None)
    assert found["held_out_with_a_near_duplicate"] == 0


def test_a_resized_copy_in_another_dataset_joins_the_same_group(tmp_path) -> None:
    from PIL import Image

    from brain_pipeline.core.data.manifest import build_manifest
    from brain_pipeline.core.data.sources import DatasetSpec

    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[:256, :256]
    head = (((yy - 128) / 110) ** 2 + ((xx - 128) / 90) ** 2 < 1).astype(float)
    texture = np.kron(rng.uniform(0.4, 1.0, (16, 16)), np.ones((16, 16)))
    original = Image.fromarray((head * texture * 255).astype(np.uint8))
    for name, image in (("big", original), ("small", original.resize((96, 96)))):
        (tmp_path / name / "yes").mkdir(parents=True)
        image.save(tmp_path / name / "yes" / "scan.png")
    other = Image.fromarray(
        (head * np.kron(rng.uniform(0.4, 1, (16, 16)), np.ones((16, 16))) * 255).astype(np.uint8)
    )
    other.save(tmp_path / "big" / "yes" / "other.png")
    specs = [DatasetSpec("big", tmp_path / "big"), DatasetSpec("small", tmp_path / "small")]
    manifest, _ = build_manifest(specs)
    index, _, report, _, *_ = build_balanced_index(manifest, IndexSettings(balance_classes=False))
    groups = index.set_index(index["dataset"] + "/" + index["path"])["group_id"]
    assert groups["big/yes/scan.png"] == groups["small/yes/scan.png"]
    assert groups["big/yes/other.png"] != groups["big/yes/scan.png"]


def test_split_rows_keeps_table_order_and_names_unknown_splits() -> None:
    table = pd.DataFrame({"sha256": list("abcd"), "split": ["test", "train", "test", "val"]})
    rows = split_rows(table, "test")
    assert rows["sha256"].tolist() == ["a", "c"] and rows.index.tolist() == [0, 1]
    with pytest.raises(ValueError, match="'holdout' is not one of"):
        split_rows(table, "holdout")


def test_images_of_one_subject_share_a_group_within_their_dataset_only() -> None:
    def scan(path: str, subject: str | None, seed: int, dataset: str = "adni") -> dict:
        target = "alzheimer_brain" if path.startswith("AD") else "healthy_brain"
        return _row(path, target, f"{dataset}/{path}", _thumb(seed), dataset) | {"subject": subject}

    manifest = pd.DataFrame(
        [
            scan("AD/s1_0.jpeg", "s1", 1),
            scan("AD/s1_4.jpeg", "s1", 2),
            scan("AD/s1_8.jpeg", "s1", 3),
            scan("NC/s2_0.jpeg", "s2", 4),
            scan("NC/s2_4.jpeg", "s2", 5),
            scan("NC/s1_0.jpeg", "s1", 6, dataset="other"),  # the same id elsewhere: another person
            scan("NC/loose.jpeg", None, 7, dataset="other"),
        ]
    )
    settings = IndexSettings(detect_resaved_copies=False, balance_classes=False)
    index, _, report, *_ = build_balanced_index(manifest, settings)
    groups = index.set_index("path")["group_id"]
    assert groups[["AD/s1_0.jpeg", "AD/s1_4.jpeg", "AD/s1_8.jpeg"]].nunique() == 1
    assert groups[["NC/s2_0.jpeg", "NC/s2_4.jpeg"]].nunique() == 1
    assert index["group_id"].nunique() == 4  # s1, s2, other's s1, the loose image
    assert (report.n_content_groups, report.n_subject_joins, report.n_subjects) == (7, 3, 3)
    assert report.groups_per_dataset == {"adni": 2, "other": 2}
    assert index.set_index("path").loc["AD/s1_4.jpeg", "subjects"] == ["adni:s1"]
    # The splits keep a subject whole; a subject split by hand is caught.
    table = split_index(index, SplitSettings(val_fraction=0.3, test_fraction=0.3))
    assert leakage_report(table)["subjects_in_several_splits"] == 0
    torn = table.assign(group_id=table["sha256"], split=["train", "test"] * 3 + ["val"])
    assert leakage_report(torn)["subjects_in_several_splits"] >= 1

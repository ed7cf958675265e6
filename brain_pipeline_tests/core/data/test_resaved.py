"""Re-saved copies: found after every alteration, distinct scans kept apart, leaks flagged."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from brain_pipeline.core.data import resaved
from brain_pipeline.core.data.alterations import alterations
from brain_pipeline.core.data.dedup import (
    IndexSettings,
    build_balanced_index,
    cross_split_near_duplicates,
    link_kept_copies,
)
from brain_pipeline.core.data.manifest import grayscale_thumbnail
from brain_pipeline.core.imaging.grayscale import to_grayscale
from brain_pipeline.synthetic.phantoms import render_phantom

RULE = resaved.Acceptance()


def _scan(seed: int, style: str = "preetviradiya"):
    phantom = render_phantom(np.random.default_rng(seed), "tumor_brain", style, size=(256, 256))
    return to_grayscale(phantom.image)


@pytest.fixture(scope="module")
def scans():
    return [_scan(seed) for seed in range(12)]


def test_features_survive_their_stored_form(scans) -> None:
    features = resaved.local_features(scans[0])
    restored = resaved.LocalFeatures.from_bytes(*features.to_bytes())
    assert len(features.points) > 50
    np.testing.assert_allclose(restored.points, features.points, atol=0.13)  # float16 at 256
    np.testing.assert_array_equal(restored.descriptors, features.descriptors)
    np.testing.assert_array_equal(restored.detail, features.detail)
    assert max(restored.detail.shape) == resaved.DETAIL_SIDE


@pytest.mark.parametrize("name", list(alterations(np.random.default_rng(0))))
def test_every_alteration_verifies_against_its_original(scans, name) -> None:
    alter = alterations(np.random.default_rng(1))[name]
    for scan in scans[:3]:
        inliers, similarity = resaved.verify_pair(
            resaved.local_features(scan), resaved.local_features(alter(scan))
        )
        assert RULE.accepts(inliers, similarity), (name, inliers, similarity)


def test_distinct_scans_are_not_copies(scans) -> None:
    features = [resaved.local_features(scan) for scan in scans]
    for a, b in zip(features, features[1:], strict=False):
        assert not RULE.accepts(*resaved.verify_pair(a, b))


def test_linking_merges_copies_and_nothing_else(scans) -> None:
    rng = np.random.default_rng(2)
    crop, gamma = alterations(rng)["crop_20"], alterations(rng)["gamma_1.4"]
    images = [*scans, crop(scans[0]), gamma(scans[5])]
    features = [resaved.local_features(image) for image in images]
    merged, links = resaved.link_resaved_copies(features, np.arange(len(images)), RULE)
    assert merged[12] == merged[0] and merged[13] == merged[5]
    assert len(np.unique(merged)) == 12
    assert len(links) == 2 and set(links["second"]) == {12, 13}


def test_failed_candidates_do_not_hide_a_later_copy(scans) -> None:
    # Five weak candidates of image 0 fail before its true copy's: every candidate is still
    # verified (a per-image cap on failures made the index miss copies the split check found).
    copy = alterations(np.random.default_rng(5))["crop_10"](scans[0])
    features = [resaved.local_features(image) for image in [scans[0], copy, *scans[1:6]]]
    true = resaved.candidate_pairs(features[:2])
    assert len(true.first) == 1
    offsets = np.cumsum([0, *(len(f.descriptors) for f in features)])
    weak = range(2, 7)
    votes = [resaved.MIN_VOTES] * len(weak) + [int(true.votes[0])]
    span = slice(true.starts[0], true.starts[0] + true.votes[0])
    candidates = resaved.Candidates(
        first=np.zeros(len(votes), np.int64),
        second=np.array([*weak, 1]),
        votes=np.array(votes),
        starts=np.concatenate([[0], np.cumsum(votes)[:-1]]),
        match_first=np.concatenate(
            [*(np.arange(resaved.MIN_VOTES) for _ in weak), true.match_first[span]]
        ),
        match_second=np.concatenate(
            [*(offsets[j] + np.arange(resaved.MIN_VOTES) for j in weak), true.match_second[span]]
        ),
    )
    merged, links = resaved.link_resaved_copies(features, np.arange(7), RULE, candidates)
    assert merged[1] == merged[0] and len(links) == 1


def test_leaks_flag_only_held_out_copies_of_training_images(scans) -> None:
    crop = alterations(np.random.default_rng(3))["crop_10"]
    images = [*scans[:6], crop(scans[0]), crop(scans[1])]
    features = [resaved.local_features(image) for image in images]
    held_out = np.array([False] * 6 + [True, False])
    leaked = resaved.resaved_leaks(features, held_out, RULE)
    assert leaked.tolist() == [False] * 6 + [True, False]


def _sha(i: int) -> str:
    return hashlib.sha256(str(i).encode()).hexdigest()


def _manifest_rows(images) -> pd.DataFrame:
    rows = []
    for i, image in enumerate(images):
        keypoints, detail = resaved.local_features(image).to_bytes()
        rows.append(
            {
                "dataset": "d",
                "path": f"{i}.png",
                "source_label": "yes",
                "target_class": "tumor_brain",
                "sha256": _sha(i),
                "status": "ok",
                "thumbnail": grayscale_thumbnail(image),
                "keypoints": keypoints,
                "detail": detail,
            }
        )
    return pd.DataFrame(rows)


def test_the_index_groups_a_window_copy_and_the_check_sees_it_across_splits(scans) -> None:
    window = alterations(np.random.default_rng(4))["combined"]
    manifest = _manifest_rows([*scans[:5], window(scans[2])])
    index, _, report, links, *_ = build_balanced_index(
        manifest, IndexSettings(balance_classes=False)
    )
    groups = index.set_index("path")["group_id"]
    assert groups["5.png"] == groups["2.png"] and groups.nunique() == 5
    assert report.n_resaved_links == 1 and report.n_thumbnail_groups == 6
    assert set(links[["first", "second"]].iloc[0]) == {_sha(2), _sha(5)}
    # Splits made by hand, ignoring the groups: the copy of a training image sits in test.
    table = pd.DataFrame({"sha256": manifest["sha256"], "split": ["train"] * 5 + ["test"]})
    found = cross_split_near_duplicates(table, manifest.set_index("sha256"))
    assert found == {"thumbnail_twins": 0, "resaved_copies": 1, "held_out_with_a_near_duplicate": 1}


def test_copies_among_the_kept_rows_merge_their_groups_everywhere(scans) -> None:
    # The kept rows are searched again: a copy the search over every content missed merges
    # its groups in the index and in the full table (the dropped row follows its group).
    copy = alterations(np.random.default_rng(4))["combined"](scans[2])
    rows = _manifest_rows([*scans[:4], copy])
    grouped = rows.assign(group_id=["g0", "g1", "g2", "g3", "g9"])
    grouped = pd.concat([grouped, grouped.iloc[[0]].assign(sha256=_sha(9), group_id="g9")])
    index = grouped.iloc[:5]
    grouped, index, links = link_kept_copies(grouped, index, resaved.DEFAULT_RESAVED_SIMILARITY)
    assert index["group_id"].tolist() == ["g0", "g1", "g2", "g3", "g2"]
    assert grouped["group_id"].tolist() == ["g0", "g1", "g2", "g3", "g2", "g2"]
    assert set(links[["first", "second"]].iloc[0]) == {_sha(2), _sha(4)}


def test_an_old_manifest_without_features_is_refused_by_name() -> None:
    manifest = _manifest_rows([_scan(0)]).drop(columns=["keypoints", "detail"])
    with pytest.raises(ValueError, match="keypoints.*image_manifest"):
        build_balanced_index(manifest, IndexSettings())


def test_a_blank_image_has_no_keypoints_and_links_to_nothing(scans) -> None:
    blank = resaved.local_features(Image.new("L", (64, 64), 0))
    restored = resaved.LocalFeatures.from_bytes(*blank.to_bytes())
    assert restored.descriptors.shape == (0, resaved.DESCRIPTOR_BYTES)
    features = [restored, restored, resaved.local_features(scans[0])]
    merged, links = resaved.link_resaved_copies(features, np.arange(3), RULE)
    assert merged.tolist() == [0, 1, 2] and links.empty

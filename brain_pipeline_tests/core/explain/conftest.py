"""One tiny trained CNN and its data for every explanation test (trained once per package)."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from brain_pipeline_tests.core.explain.tiny_brains import make_data, trained_cnn


@pytest.fixture(scope="package")
def train_data():
    return make_data(seed=0, n=256)


@pytest.fixture(scope="package")
def test_data():
    return make_data(seed=1, n=64)


@pytest.fixture(scope="package")
def model(train_data) -> keras.Model:
    images, labels, _ = train_data
    return trained_cnn(images, labels)


@pytest.fixture(scope="package")
def lesion_set(test_data):
    """Class-1 test images with their lesion masks."""
    images, labels, masks = test_data
    idx = np.flatnonzero(labels == 1)
    return images[idx], labels[idx], [masks[i] for i in idx]

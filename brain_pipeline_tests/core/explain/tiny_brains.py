"""Tiny synthetic "brains" and a tiny CNN that learns them, for the explanation tests.

Images are 32x32: a bright disc ("brain") at a random position; class 1 adds a small bright
square ("lesion") inside the disc. The CNN learns the task in a few seconds, which makes
localisation, faithfulness and sanity checks testable.
"""

from __future__ import annotations

import keras
import numpy as np

SIZE = 32
LESION = 4


def make_data(seed: int, n: int) -> tuple[np.ndarray, np.ndarray, list[np.ndarray | None]]:
    """Images (n, 32, 32, 1), labels alternating 0/1, lesion masks (None for class 0)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    images = np.zeros((n, SIZE, SIZE, 1), np.float32)
    labels = np.arange(n) % 2
    masks: list[np.ndarray | None] = []
    for i in range(n):
        radius = rng.uniform(9, 12)
        cy, cx = rng.uniform(radius + 1, SIZE - radius - 1, size=2)
        dist2 = (yy - cy) ** 2 + (xx - cx) ** 2
        image = (dist2 <= radius**2) * (rng.uniform(0.45, 0.6) + rng.normal(0, 0.03, dist2.shape))
        mask = None
        if labels[i]:
            inner = dist2 <= (radius - 1.5) ** 2
            while True:  # rejection-sample a square fully inside the disc
                y, x = rng.integers(0, SIZE - LESION, size=2)
                if inner[y : y + LESION, x : x + LESION].all():
                    break
            mask = np.zeros((SIZE, SIZE), bool)
            mask[y : y + LESION, x : x + LESION] = True
            image[mask] = 1.0
        images[i, ..., 0] = np.clip(image, 0.0, 1.0)
        masks.append(mask)
    return images, labels, masks


def build_cnn() -> keras.Model:
    inputs = keras.Input((SIZE, SIZE, 1))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(2, name="logits")(x)
    outputs = keras.layers.Activation("softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs)


def trained_cnn(images: np.ndarray, labels: np.ndarray) -> keras.Model:
    """The tiny CNN trained in short rounds until clearly accurate (usually ~40 epochs, ~4 s)."""
    keras.utils.set_random_seed(0)
    net = build_cnn()
    net.compile(
        keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    for _ in range(8):
        history = net.fit(images, labels, epochs=10, batch_size=32, verbose=0)
        if history.history["accuracy"][-1] > 0.97:
            break
    return net


def predict_classes(model: keras.Model, images: np.ndarray) -> np.ndarray:
    return model.predict(images, verbose=0).argmax(axis=1)

"""The training input pipeline: batches read from the memory-mapped tensor cache."""

from __future__ import annotations

import numpy as np


def batch_stream(
    tensors: np.ndarray,
    labels: np.ndarray,
    n_classes: int,
    *,
    batch_size: int,
    shuffle: bool,
    seed: int,
):
    """A tf.data pipeline reading batches from the (memory-mapped) tensor cache."""
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    one_hot = np.eye(n_classes, dtype=np.float32)[labels]

    def batches():
        order = rng.permutation(len(tensors)) if shuffle else np.arange(len(tensors))
        for start in range(0, len(order), batch_size):
            # Sorted indices read the memory map sequentially.
            chosen = np.sort(order[start : start + batch_size])
            yield np.asarray(tensors[chosen], dtype=np.float32), one_hot[chosen]

    size = tensors.shape[1]
    signature = (
        tf.TensorSpec(shape=(None, size, size, 1), dtype=tf.float32),
        tf.TensorSpec(shape=(None, n_classes), dtype=tf.float32),
    )
    n_batches = -(-len(tensors) // batch_size)
    stream = tf.data.Dataset.from_generator(batches, output_signature=signature)
    # A known length lets Keras size its epochs without running the generator dry first.
    return stream.apply(tf.data.experimental.assert_cardinality(n_batches)).prefetch(2)

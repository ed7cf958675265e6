"""The training input pipeline: shuffled batches of the cached tensors as a tf.data stream."""

from __future__ import annotations

import numpy as np

# Splits whose float16 tensors fit in this many bytes are copied into memory once and sliced
# by tf.data's own threads; larger ones are streamed from the memory map by a Python generator
# (memory stays flat, but one Python thread feeds the model).
IN_MEMORY_BYTES = 2 * 1024**3


def batch_stream(
    tensors: np.ndarray,
    labels: np.ndarray,
    n_classes: int,
    *,
    batch_size: int,
    shuffle: bool,
    seed: int,
    weights: np.ndarray | None = None,
    in_memory_bytes: int = IN_MEMORY_BYTES,
):
    """A tf.data pipeline of (float32 images, one-hot labels[, sample weights]) batches,
    reshuffled (seeded) every epoch when ``shuffle``; the last batch may be smaller."""
    import tensorflow as tf

    one_hot = np.eye(n_classes, dtype=np.float32)[labels]
    parts = (one_hot,) if weights is None else (one_hot, np.asarray(weights, np.float32))
    if tensors.nbytes <= in_memory_bytes:
        stream = tf.data.Dataset.from_tensor_slices((np.asarray(tensors), *parts))
        if shuffle:
            stream = stream.shuffle(len(one_hot), seed=seed, reshuffle_each_iteration=True)
        stream = stream.batch(batch_size).map(
            lambda x, *rest: (tf.cast(x, tf.float32), *rest),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
        return stream.prefetch(tf.data.AUTOTUNE)
    return _generator_stream(tensors, parts, batch_size=batch_size, shuffle=shuffle, seed=seed)


def _generator_stream(tensors, parts, *, batch_size: int, shuffle: bool, seed: int):
    import tensorflow as tf

    rng = np.random.default_rng(seed)

    def batches():
        order = rng.permutation(len(tensors)) if shuffle else np.arange(len(tensors))
        for start in range(0, len(order), batch_size):
            # Sorted indices read the memory map sequentially.
            chosen = np.sort(order[start : start + batch_size])
            yield (np.asarray(tensors[chosen], dtype=np.float32), *(p[chosen] for p in parts))

    size = tensors.shape[1]
    signature = (
        tf.TensorSpec(shape=(None, size, size, tensors.shape[-1]), dtype=tf.float32),
        *(tf.TensorSpec(shape=(None, *p.shape[1:]), dtype=tf.float32) for p in parts),
    )
    n_batches = -(-len(tensors) // batch_size)
    stream = tf.data.Dataset.from_generator(batches, output_signature=signature)
    # A known length lets Keras size its epochs without running the generator dry first.
    return stream.apply(tf.data.experimental.assert_cardinality(n_batches)).prefetch(2)

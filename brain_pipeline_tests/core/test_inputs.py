import numpy as np

from brain_pipeline.core.model.inputs import batch_stream


def test_batch_stream_yields_every_image_once_per_epoch() -> None:
    tensors = np.arange(10, dtype=np.float16).reshape(10, 1, 1, 1) * np.ones(
        (1, 4, 4, 1), np.float16
    )
    labels = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])
    stream = batch_stream(tensors, labels, 3, batch_size=4, shuffle=True, seed=1)
    seen = np.concatenate([x.numpy()[:, 0, 0, 0] for x, _ in stream])
    assert sorted(seen.tolist()) == list(range(10))

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


def _epochs_of_first_values(stream, epochs: int) -> list[list[float]]:
    return [
        np.concatenate([x.numpy()[:, 0, 0, 0] for x, _ in stream]).tolist() for _ in range(epochs)
    ]


def test_both_input_paths_give_float32_batches_of_every_image_reshuffled_each_epoch() -> None:
    tensors = np.arange(10, dtype=np.float16).reshape(10, 1, 1, 1) * np.ones(
        (1, 4, 4, 1), np.float16
    )
    labels = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])
    for in_memory_bytes in (tensors.nbytes, 0):  # in memory, then the generator
        stream = batch_stream(
            tensors, labels, 3, batch_size=4, shuffle=True, seed=3, in_memory_bytes=in_memory_bytes
        )
        first, second = _epochs_of_first_values(stream, 2)
        assert sorted(first) == sorted(second) == list(range(10))
        assert first != second, "a new order every epoch"
        again = batch_stream(
            tensors, labels, 3, batch_size=4, shuffle=True, seed=3, in_memory_bytes=in_memory_bytes
        )
        assert _epochs_of_first_values(again, 2) == [first, second], "same seed, same orders"
        x, y = next(iter(again))
        assert x.dtype.name == "float32" and x.shape[1:] == (4, 4, 1)
        np.testing.assert_array_equal(
            y.numpy().argmax(1), labels[x.numpy()[:, 0, 0, 0].astype(int)]
        )
    unshuffled = batch_stream(tensors, labels, 3, batch_size=4, shuffle=False, seed=0)
    assert _epochs_of_first_values(unshuffled, 1) == [list(range(10))]


def test_sample_weights_travel_with_their_images_on_both_paths() -> None:
    tensors = np.arange(10, dtype=np.float16).reshape(10, 1, 1, 1) * np.ones(
        (1, 4, 4, 1), np.float16
    )
    labels = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])
    weights = np.linspace(0.5, 5.0, 10)
    for in_memory_bytes in (tensors.nbytes, 0):
        stream = batch_stream(
            tensors,
            labels,
            3,
            batch_size=4,
            shuffle=True,
            seed=5,
            weights=weights,
            in_memory_bytes=in_memory_bytes,
        )
        seen = 0
        for x, y, w in stream:
            index = x.numpy()[:, 0, 0, 0].astype(int)
            np.testing.assert_allclose(w.numpy(), weights[index], rtol=1e-6)
            np.testing.assert_array_equal(y.numpy().argmax(1), labels[index])
            seen += len(index)
        assert seen == 10

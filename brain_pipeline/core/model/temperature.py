"""Temperature scaling (Guo et al., 2017): one number that makes confidences honest.

A network trained to low loss is often over- or under-confident: its 0.9 is not right nine
times in ten. Dividing the logits by a temperature T (fitted on validation images, by
log-loss) fixes much of that without moving any decision: the class with the largest logit
stays the largest. Folding 1/T into the weights of the final `logits` layer makes the saved
model itself calibrated, so evaluation, serving and every export see the same probabilities.
"""

from __future__ import annotations

import numpy as np

# Candidates for T; 1.0 is among them, so a calibrated model keeps T = 1.
TEMPERATURES = np.geomspace(0.25, 4.0, 121)
LOGITS_LAYER = "logits"


def with_temperature(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """Softmax of the log-probabilities divided by `temperature` (the logits up to a shift)."""
    logits = np.log(np.clip(probabilities, 1e-12, 1.0)) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    scaled = np.exp(logits)
    return scaled / scaled.sum(axis=1, keepdims=True)


def fitted_temperature(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """The candidate temperature of lowest mean log-loss on these (validation) images."""
    labels = np.asarray(labels)
    if len(labels) == 0:
        raise ValueError("fitting a temperature needs validation images; the split is empty")
    rows = np.arange(len(labels))
    losses = [
        -np.log(with_temperature(probabilities, t)[rows, labels] + 1e-12).mean()
        for t in TEMPERATURES
    ]
    return float(TEMPERATURES[int(np.argmin(losses))])


def fold_into_logits(model, temperature: float) -> None:
    """Divide the final `logits` layer's kernel and bias by `temperature`, in place."""
    if temperature <= 0:
        raise ValueError(f"a temperature must be positive, got {temperature}")
    layer = model.get_layer(LOGITS_LAYER)
    layer.set_weights([weights / temperature for weights in layer.get_weights()])

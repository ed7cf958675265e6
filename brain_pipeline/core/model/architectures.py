"""CNN architectures, chosen by name.

Every model takes (size, size, channels) float32 images in [0, 1] and ends with a linear
`logits` layer followed by a `probabilities` softmax, so Grad-CAM can take gradients of the
class logit rather than of the saturating softmax.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import keras
from keras import layers


@dataclass(frozen=True)
class AugmentationConfig:
    """Random, label-preserving changes applied during training only."""

    flip: bool = True
    rotation: float = 0.04  # fraction of a full turn
    zoom: float = 0.08
    # Off by default: equalised inputs all share one intensity distribution, so jittered
    # intensities would be inputs the model meets only in training.
    contrast: float = 0.0
    brightness: float = 0.0
    # Against scanner style rather than anatomy: Gaussian noise of this standard deviation
    # (inputs in [0, 1]) and a Gaussian blur of random strength up to this factor (0 to 1;
    # kernel 5, sigma up to 1 px, the most Keras allows), each drawn per image.
    noise: float = 0.0
    blur: float = 0.0

    @property
    def enabled(self) -> bool:
        changes = (self.rotation, self.zoom, self.contrast, self.brightness, self.noise, self.blur)
        return self.flip or any(changes)


def augmentation_layers(config: AugmentationConfig, seed: int) -> list[layers.Layer]:
    stack: list[layers.Layer] = []
    if config.flip:
        stack.append(layers.RandomFlip("horizontal", seed=seed))
    if config.rotation:
        stack.append(layers.RandomRotation(config.rotation, fill_mode="constant", seed=seed))
    if config.zoom:
        stack.append(layers.RandomZoom(config.zoom, fill_mode="constant", seed=seed))
    if config.contrast:
        stack.append(layers.RandomContrast(config.contrast, seed=seed))
    if config.brightness:
        stack.append(layers.RandomBrightness(config.brightness, value_range=(0, 1), seed=seed))
    if config.blur:
        stack.append(
            layers.RandomGaussianBlur(
                config.blur, kernel_size=5, sigma=1.0, value_range=(0, 1), seed=seed
            )
        )
    if config.noise:
        stack.append(layers.GaussianNoise(config.noise, seed=seed))
    return stack


def seed_cnn(
    input_shape: tuple[int, int, int], n_classes: int, augmentation: list[layers.Layer]
) -> keras.Model:
    """The original study's network: 3 x (Conv2D + MaxPool), Flatten, Dense 128, Dropout."""
    return keras.Sequential(
        [
            keras.Input(shape=input_shape),
            *augmentation,
            layers.Conv2D(32, 3, activation="relu"),
            layers.MaxPooling2D(),
            layers.Conv2D(64, 3, activation="relu"),
            layers.MaxPooling2D(),
            layers.Conv2D(128, 3, activation="relu"),
            layers.MaxPooling2D(),
            layers.Flatten(),
            layers.Dense(128, activation="relu"),
            layers.Dropout(0.5),
            layers.Dense(n_classes, name="logits"),
            layers.Activation("softmax", name="probabilities"),
        ],
        name="seed_cnn",
    )


def _staged_cnn(
    input_shape: tuple[int, int, int],
    n_classes: int,
    augmentation: list[layers.Layer],
    *,
    widths: tuple[int, ...],
    convs_per_stage: int,
    name: str,
) -> keras.Model:
    """Stages of conv-BN-ReLU (separable after the first convolution), max-pooled between
    stages; global average pooling, dropout, linear logits, softmax."""
    inputs = keras.Input(shape=input_shape)
    x = inputs
    for layer in augmentation:
        x = layer(x)
    for stage, filters in enumerate(widths, start=1):
        for k in range(convs_per_stage):
            suffix = "" if convs_per_stage == 1 else chr(ord("a") + k)
            first = stage == 1 and k == 0
            x = _conv_block(x, filters, separable=not first, name=f"block{stage}{suffix}")
        if stage < len(widths):
            x = layers.MaxPooling2D()(x)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(0.3)(x)
    logits = layers.Dense(n_classes, name="logits")(x)
    outputs = layers.Activation("softmax", name="probabilities")(logits)
    return keras.Model(inputs, outputs, name=name)


def _conv_block(x, filters: int, *, separable: bool, name: str):
    conv = layers.SeparableConv2D if separable else layers.Conv2D
    x = conv(filters, 3, padding="same", use_bias=False, name=f"{name}_conv")(x)
    # momentum 0.9: moving statistics settle within a few epochs even on small datasets
    x = layers.BatchNormalization(momentum=0.9, name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


ARCHITECTURES: dict[str, Callable[..., keras.Model]] = {
    # The default: two convolutions per stage, 24-192 channels, about 82 k parameters. The
    # second convolution helps it learn small local findings: on healthy vs tumour phantoms
    # of one source style, compact_cnn reached 0.70 validation accuracy and this network
    # 0.89 (docs/decisions.md, "Default architecture"). Grad-CAM reads a 12x12 map at 96 px.
    "stacked_cnn": functools.partial(
        _staged_cnn, widths=(24, 48, 96, 192), convs_per_stage=2, name="stacked_cnn"
    ),
    # The smallest CPU-friendly net: one convolution per stage, about 13 k parameters at
    # 128 px (the seed network has 3.3 M, most of them in its Flatten->Dense layer).
    "compact_cnn": functools.partial(
        _staged_cnn, widths=(16, 32, 64, 128), convs_per_stage=1, name="compact_cnn"
    ),
    "seed_cnn": seed_cnn,
}


def build_model(
    architecture: str,
    *,
    image_size: int,
    channels: int = 1,
    n_classes: int,
    augmentation: AugmentationConfig | None = None,
    seed: int = 0,
) -> keras.Model:
    if architecture not in ARCHITECTURES:
        raise ValueError(
            f"unknown architecture {architecture!r}; choose one of {', '.join(ARCHITECTURES)}"
        )
    if image_size < 32:
        raise ValueError(f"image_size {image_size} is too small; use at least 32 pixels")
    augment = augmentation_layers(augmentation, seed) if augmentation else []
    return ARCHITECTURES[architecture]((image_size, image_size, channels), n_classes, augment)

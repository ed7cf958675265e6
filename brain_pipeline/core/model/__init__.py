"""Keras architectures, training and test-split evaluation."""

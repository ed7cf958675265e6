"""Explanations of a trained model: heatmaps and how far they can be trusted."""

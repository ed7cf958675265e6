"""From image files to model-ready tensors: preprocessing, brain mask, tensor cache, and the
shared blur."""

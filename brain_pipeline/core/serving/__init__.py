"""Using a trained model outside the pipeline: safe decoding of uploads, the
out-of-distribution guard, batched inference and portable exports (no web framework here)."""

"""Raw datasets and what is derived from them: sources, manifest, dedup, splits, shortcut probes."""

"""Synthetic brain-MRI phantoms in the layouts of the three Kaggle downloads (`phantoms`),
with lesion masks: the embedded `data/` and every test's raw data are made here
(`brain-pipeline synth`). The pipeline itself never imports this package.
"""

"""The core: plain Python, NumPy and Keras. Nothing here imports dagster."""

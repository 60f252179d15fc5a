"""Training: the phase engine, its logs, checkpoints and the notebooks' hand-over files."""

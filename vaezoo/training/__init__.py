"""Training a model: one optimisation step, the trainer's loop with its checkpoints and early stopping, the
run's callbacks, and data-parallel training."""

"""A run on disk and in memory: its directory and lock, its checkpoints, stopping on signals, and the session
that holds a run's configuration, data and model."""

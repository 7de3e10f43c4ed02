"""Evaluating a model: the metrics, the evaluation pass over a split, the priors a model is tested under, and
samples and figures."""

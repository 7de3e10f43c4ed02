"""Assembling a VAE from the configured components."""

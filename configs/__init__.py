"""Experiment configs: each module's get_config() returns a locked ml_collections ConfigDict."""

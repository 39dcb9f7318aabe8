"""Tiny model weights in the volume layout, for tests and benchmarks (never shipped)."""

from tests.support_models.tiny import TinyModels, build_tiny_volume

__all__ = ["TinyModels", "build_tiny_volume"]

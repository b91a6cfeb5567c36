"""Stable Diffusion components: one loading path for hub ids, local folders and the built-in `tiny` preset."""

from hifilight.models.loading import SDComponents, load_components

__all__ = ["SDComponents", "load_components"]

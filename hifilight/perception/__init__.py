"""Perception models used around the diffusion model: subject segmentation (and, later, image encoders)."""

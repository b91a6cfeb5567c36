"""DreamBench evaluation: metrics (DINO, CLIP-I, CLIP-T), the benchmark's subjects and prompts, the runner."""

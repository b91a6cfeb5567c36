"""ToyWorld: a procedurally generated world where the truth of every image is known (issue: a CPU-scale stand-in
for the pretrained models that cannot be downloaded here). This package holds the scene generator and the
personalization subjects; the models trained on it are future work."""

"""ToySD's VAE training (LDM's KL autoencoder without the GAN) and the judge's adaptation to what its decoder
draws."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL


def reconstruction_loss(recon: torch.Tensor, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """L1 + L2 per element, averaged with per-pixel `weights` (N, 1, H, W); all ones: F.l1_loss + F.mse_loss."""
    err = (recon - x).abs() + (recon - x) ** 2
    return (err * weights).mean() / weights.mean()


def train_vae(
    vae: AutoencoderKL,
    images: torch.Tensor,
    steps: int,
    batch: int,
    lr: float,
    seed: int,
    crop: int = 64,
    kl_weight: float = 1e-6,
    masks: torch.Tensor | None = None,
    object_weight: float = 0.0,
    log=print,
) -> AutoencoderKL:
    """Reconstruction (L1 + L2) plus a small KL term, as in LDM's KL-regularised autoencoder without the GAN. The
    VAE is convolutional, so it can train on random `crop` x `crop` crops (cheaper, but it leaves edge artefacts).

    With `masks` (N, 1, H, W), object pixels weigh 1 + `object_weight` in the reconstruction loss: the object is
    ~15% of a ToyWorld image and its dots and stripes a fraction of that, so a plain mean spends the VAE's capacity
    on the backgrounds, and the subjects' second colour is what it loses first."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(vae.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    vae.train()
    for step in range(steps):
        idx = torch.randint(len(images), (batch,), generator=g)
        x = images[idx]
        w = torch.ones_like(x[:, :1]) if masks is None else 1 + object_weight * masks[idx]
        if crop < x.shape[-1]:
            i, j = torch.randint(0, (x.shape[-1] - crop) // 8 + 1, (2,), generator=g).tolist()
            x, w = (a[..., 8 * i : 8 * i + crop, 8 * j : 8 * j + crop] for a in (x, w))
        posterior = vae.encode(x).latent_dist
        recon = vae.decode(posterior.sample(generator=g)).sample
        loss = reconstruction_loss(recon, x, w) + kl_weight * posterior.kl().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 100 == 0 or step == steps - 1:
            log(f"vae step {step}: loss {loss.item():.4f}")
    return vae.eval()


@torch.no_grad()
def reconstruction_accuracy(vae: AutoencoderKL, n: int = 256, seed: int = 12345) -> dict[str, float]:
    """The ToyWorld classifier's accuracy on VAE reconstructions of fresh renders (what the VAE keeps readable)."""
    from hifilight.toyworld.models import accuracy

    scores = accuracy(
        load_classifier(), n, seed, lambda x: vae.decode(vae.encode(x).latent_dist.mean).sample.clamp(-1, 1)
    )
    return {k: round(v, 3) for k, v in scores.items()}


def load_classifier():
    from hifilight.toyworld.models import load

    return load("classifier_toysd")


def blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur of a (N, C, H, W) batch."""
    radius = max(1, int(3 * sigma))
    k = torch.exp(-0.5 * (torch.arange(-radius, radius + 1) / sigma) ** 2)
    k = (k / k.sum()).to(x)
    c = x.shape[1]
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="replicate"), k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(
        F.pad(x, (0, 0, radius, radius), mode="replicate"), k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c
    )


def adapt_classifier(vae: AutoencoderKL, steps: int, seed: int, batch: int = 64, lr: float = 3e-4, log=print):
    """Fine-tune the committed ToyWorld classifier (saved as `classifier_toysd`, the judge of ToySD's images) so that
    it reads images that went through ToySD's decoder: half
    of each batch is VAE reconstructions, a quarter blurred (sigma 0.3-1.2 px), a quarter clean renders. Without
    this the readers, trained on crisp renders only, misread the decoder's slightly soft edges."""
    from hifilight.toyworld.models import classifier_loss, load, sample

    model = load("classifier").train()
    rng = np.random.default_rng([seed, 7])
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    for step in range(steps):
        x, labels, _ = sample(rng, batch)
        with torch.no_grad():
            half, quarter = batch // 2, batch // 4
            x[:half] = vae.decode(vae.encode(x[:half]).latent_dist.mean).sample.clamp(-1, 1)
            x[half : half + quarter] = blur(x[half : half + quarter], float(0.3 + 0.9 * torch.rand((), generator=g)))
        loss = classifier_loss(model, x, labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 100 == 0 or step == steps - 1:
            log(f"classifier adaptation step {step}: loss {loss.item():.4f}")
    return model.eval()

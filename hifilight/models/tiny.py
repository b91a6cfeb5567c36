"""The built-in `tiny` preset: seeded random-weight Stable Diffusion components built from configs.

Everything here is offline. The tokenizer is a CLIP BPE tokenizer with the byte alphabet and no merges (every word
is split into characters), so it needs no vocabulary file. Images produced with this preset are NOT meaningful;
it exists to exercise the exact code paths a real model uses, fast, on a CPU.
"""

from __future__ import annotations

import torch
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
from transformers import CLIPConfig, CLIPModel, CLIPTextConfig, CLIPTextModel, CLIPTokenizer, ViTConfig, ViTModel

TINY_SEED = 0
TEXT_HIDDEN = 32
BOS, EOS = "<|startoftext|>", "<|endoftext|>"


def bytes_to_unicode() -> dict[int, str]:
    """CLIP's reversible byte -> printable unicode map (the alphabet of its BPE)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    bs += list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs), strict=True))


def tiny_tokenizer() -> CLIPTokenizer:
    """A character-level CLIP tokenizer (vocabulary of 514 entries, ids 512/513 = BOS/EOS)."""
    alphabet = list(bytes_to_unicode().values())
    tokens = alphabet + [c + "</w>" for c in alphabet] + [BOS, EOS]
    vocab = {tok: i for i, tok in enumerate(tokens)}
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77, pad_token=EOS)


def tiny_text_encoder(vocab_size: int, hidden: int = TEXT_HIDDEN) -> CLIPTextModel:
    config = CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=77,
        bos_token_id=vocab_size - 2,
        eos_token_id=vocab_size - 1,
        pad_token_id=vocab_size - 1,
    )
    return CLIPTextModel(config)


def tiny_unet() -> UNet2DConditionModel:
    return UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=16,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=TEXT_HIDDEN,
        attention_head_dim=8,
        norm_num_groups=32,
    )


def quarter_unet() -> UNet2DConditionModel:
    """SD1.4's UNet layout at 1/4 of its widths (80, 160, 320, 320), 768-d cross-attention: for benchmarks."""
    return UNet2DConditionModel(
        block_out_channels=(80, 160, 320, 320),
        layers_per_block=2,
        sample_size=32,
        cross_attention_dim=768,
        attention_head_dim=8,
        norm_num_groups=16,
    )


def tiny_vae() -> AutoencoderKL:
    # Four blocks, like SD's VAE, so the latent is 1/8 of the image as with real weights.
    return AutoencoderKL(
        block_out_channels=(8, 16, 16, 16),
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=1,
        norm_num_groups=8,
        sample_size=128,
    )


def sd14_ddim_scheduler() -> DDIMScheduler:
    """DDIM configured like Stable Diffusion v1.4."""
    return DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        num_train_timesteps=1000,
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
        prediction_type="epsilon",
    )


def build_components(seed: int, tokenizer: CLIPTokenizer, unet_fn, vae_fn, text_fn) -> dict:
    """SD components from factories, each seeded (unet: seed, vae: seed + 1, text encoder: seed + 2);
    `text_fn(vocab_size)` builds the text encoder for the tokenizer's vocabulary."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = unet_fn()
        torch.manual_seed(seed + 1)
        vae = vae_fn()
        torch.manual_seed(seed + 2)
        text_encoder = text_fn(len(tokenizer))
    return {
        "unet": unet,
        "vae": vae,
        "text_encoder": text_encoder,
        "tokenizer": tokenizer,
        "scheduler": sd14_ddim_scheduler(),
    }


def _build(seed: int, unet_fn, text_hidden: int) -> dict:
    return build_components(seed, tiny_tokenizer(), unet_fn, tiny_vae, lambda n: tiny_text_encoder(n, text_hidden))


def build_tiny(seed: int = TINY_SEED) -> dict:
    """Build the tiny components with a fixed seed; the same seed always gives the same weights."""
    return _build(seed, tiny_unet, TEXT_HIDDEN)


def build_quarter(seed: int = TINY_SEED) -> dict:
    """`tiny-quarter`: the tiny VAE/text encoder with a 768-d text output and a UNet at 1/4 of SD1.4's widths."""
    return _build(seed, quarter_unet, 768)


def sd14_unet() -> UNet2DConditionModel:
    """Stable Diffusion v1.4's UNet configuration (860 M parameters; diffusers' defaults are SD1's layout)."""
    return UNet2DConditionModel(sample_size=64, cross_attention_dim=768, attention_head_dim=8)


def sd14_vae() -> AutoencoderKL:
    """Stable Diffusion v1.4's VAE configuration (84 M parameters)."""
    return AutoencoderKL(
        block_out_channels=(128, 256, 512, 512),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=4,
        layers_per_block=2,
        sample_size=512,
    )


def sd14_text_encoder(vocab_size: int) -> CLIPTextModel:
    """CLIP ViT-L/14's text transformer (12 layers, 768 wide) over the tiny tokenizer's vocabulary: 85 M parameters
    here, 123 M with CLIP's 49408 words; the cost of a prompt does not depend on the vocabulary size."""
    config = CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=768,
        intermediate_size=3072,
        num_hidden_layers=12,
        num_attention_heads=12,
        max_position_embeddings=77,
        hidden_act="quick_gelu",
        bos_token_id=vocab_size - 2,
        eos_token_id=vocab_size - 1,
        pad_token_id=vocab_size - 1,
    )
    return CLIPTextModel(config)


def build_sd14_shape(seed: int = TINY_SEED) -> dict:
    """`sd14-shape`: Stable Diffusion v1.4's UNet, VAE and text encoder sizes with random weights, for timing and
    memory at the size people run (benchmarks/gpu.py); speed does not depend on the weights, images are noise."""
    return build_components(seed, tiny_tokenizer(), sd14_unet, sd14_vae, sd14_text_encoder)


XL_SECOND_HIDDEN = 48  # tiny-xl's second text encoder: wider than the first, as SDXL's (1280 vs 768)


def tiny_xl_unet():
    """SDXL's UNet layout at toy size: added text-time embedding, 80-d cross-attention (32 + 48 from the two
    encoders), 48-d pooled embedding + 6 time ids x 8."""
    from hifilight.models.sdxl import PackedSDXLUNet

    return PackedSDXLUNet(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=16,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 2),
        projection_class_embeddings_input_dim=XL_SECOND_HIDDEN + 6 * 8,
        cross_attention_dim=TEXT_HIDDEN + XL_SECOND_HIDDEN,
        norm_num_groups=32,
    )


def build_tiny_xl(seed: int = TINY_SEED) -> dict:
    """`tiny-xl`: SDXL's component layout at toy size (two text encoders of different widths, the second with a
    projection, the tiny tokenizer for both, the tiny VAE), random weights, joined as in `hifilight.models.sdxl`."""
    from transformers import CLIPTextModelWithProjection

    from hifilight.models.sdxl import DualTextEncoder, DualTokenizer

    def text_fn(vocab_size: int) -> DualTextEncoder:
        first = tiny_text_encoder(vocab_size)
        wide = {"hidden_size": XL_SECOND_HIDDEN, "projection_dim": XL_SECOND_HIDDEN}
        return DualTextEncoder(first, CLIPTextModelWithProjection(CLIPTextConfig(**{**first.config.to_dict(), **wide})))

    return build_components(seed, DualTokenizer(tiny_tokenizer(), tiny_tokenizer()), tiny_xl_unet, tiny_vae, text_fn)


PRESETS = {"tiny": build_tiny, "tiny-quarter": build_quarter, "sd14-shape": build_sd14_shape, "tiny-xl": build_tiny_xl}


def tiny_vit(seed: int = TINY_SEED) -> ViTModel:
    """A random-weight ViT with DINO ViT-S/16's layout at toy size (`--metrics.dino_model tiny`,
    `--reference.dino_model tiny`)."""
    config = ViTConfig(
        image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return ViTModel(config, add_pooling_layer=False).eval()


def tiny_clip(seed: int = TINY_SEED) -> tuple[CLIPModel, CLIPTokenizer]:
    """A random-weight CLIP (image + text towers) with the tiny tokenizer (for `--metrics.clip_model tiny`)."""
    tokenizer = tiny_tokenizer()
    text = {
        "vocab_size": len(tokenizer),
        "hidden_size": 32,
        "intermediate_size": 37,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "max_position_embeddings": 77,
        "bos_token_id": len(tokenizer) - 2,
        "eos_token_id": len(tokenizer) - 1,
        "pad_token_id": len(tokenizer) - 1,
    }
    vision = {
        "image_size": 32,
        "patch_size": 8,
        "hidden_size": 32,
        "intermediate_size": 37,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
    }
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16)).eval()
    return model, tokenizer

"""What the training modules share: loading the base model onto a module, attention choice, checkpointing."""

from __future__ import annotations

from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

from hifilight.errors import HifiError

ATTENTION = {"sdpa": AttnProcessor2_0, "classic": AttnProcessor}


def configure_unet(unet, gradient_checkpointing: bool = False, attention: str = "sdpa") -> None:
    """`attention`: "sdpa" (torch scaled_dot_product_attention, diffusers' default) or "classic" (explicit softmax,
    more memory). `gradient_checkpointing` recomputes block activations in the backward pass (less memory, ~40% more
    time); diffusers applies it whenever gradients are enabled, frozen UNet or not."""
    if attention not in ATTENTION:
        raise HifiError(f"--model.attention {attention}: use one of {', '.join(ATTENTION)}")
    unet.set_attn_processor(ATTENTION[attention]())
    if gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    else:
        unet.disable_gradient_checkpointing()


def attach_components(module, pretrained: str, dtype: str, gradient_checkpointing: bool, attention: str):
    """Load the base model onto `module` (unet, vae, text_encoder, tokenizer, scheduler, base_model and an
    `alphas_cumprod` buffer), with the UNet options applied; returns the components."""
    from hifilight.models import load_components

    comps = load_components(pretrained, dtype)
    module.unet, module.vae, module.text_encoder = comps.unet, comps.vae, comps.text_encoder
    module.tokenizer, module.scheduler, module.base_model = comps.tokenizer, comps.scheduler, comps.name
    configure_unet(module.unet, gradient_checkpointing, attention)
    module.register_buffer("alphas_cumprod", comps.scheduler.alphas_cumprod.float().clone(), persistent=False)
    return comps

"""UNet options shared by the training modules: attention implementation and gradient checkpointing."""

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

"""A diffusers Stable Diffusion folder (a DreamBooth result) as one `.safetensors` checkpoint in the original
(CompVis / LDM) layout that A1111, ComfyUI and diffusers' `StableDiffusionPipeline.from_single_file` load; SDXL
folders in SDXL's original (Stability "sgm") layout, `StableDiffusionXLPipeline.from_single_file`'s: the UNet and VAE
as for SD, the first text encoder under `conditioner.embedders.0.transformer.` (transformers' CLIP layout), the second
under `conditioner.embedders.1.model.` in OpenCLIP's layout (fused q/k/v `in_proj`, `resblocks`, a transposed
`text_projection`).

The key map is the inverse of diffusers' own single-file conversion (`diffusers.loaders.single_file_utils`), whose
top-level table is reused; the block structure (ResNets, attentions, up/down samplers) follows the model's config,
so any SD-1.x-shaped UNet and VAE convert, the tiny preset included. The tests check the inverse exactly: diffusers'
conversion of the written file gives back every tensor.
"""

from __future__ import annotations

from pathlib import Path

import torch

UNET, VAE, TEXT = "model.diffusion_model.", "first_stage_model.", "cond_stage_model.transformer."
XL_TEXT, XL_OPEN_CLIP = "conditioner.embedders.0.transformer.", "conditioner.embedders.1.model."
OPEN_CLIP_TOP = {"embeddings.position_embedding.weight": "positional_embedding",
                 "embeddings.token_embedding.weight": "token_embedding.weight",
                 "final_layer_norm.weight": "ln_final.weight", "final_layer_norm.bias": "ln_final.bias"}  # fmt: skip
OPEN_CLIP_LAYER = {"layer_norm1.": "ln_1.", "layer_norm2.": "ln_2.", "mlp.fc1.": "mlp.c_fc.", "mlp.fc2.": "mlp.c_proj.",
                   "self_attn.out_proj.": "attn.out_proj."}  # fmt: skip
UNET_RESNET = {"norm1": "in_layers.0", "conv1": "in_layers.2", "time_emb_proj": "emb_layers.1",
               "norm2": "out_layers.0", "conv2": "out_layers.3", "conv_shortcut": "skip_connection"}  # fmt: skip
VAE_ATTENTION = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


def _swap(key: str, prefix: str, new_prefix: str, names: dict[str, str] | None = None) -> str | None:
    """`key` with `prefix` replaced by `new_prefix` (and its first part renamed by `names`), or None."""
    if not key.startswith(prefix):
        return None
    rest = key[len(prefix) :]
    for old, new in (names or {}).items():
        if rest.startswith(old + "."):
            rest = new + rest[len(old) :]
            break
    return new_prefix + rest


def unet_key_map(config) -> dict[str, str]:
    """diffusers UNet block prefixes -> LDM ones (ResNet sub-layers renamed by UNET_RESNET)."""
    per = config.layers_per_block + 1  # LDM counts each block's downsampler (input) or upsampler slot (output)
    pairs = []
    for i, kind in enumerate(config.down_block_types):
        for j in range(config.layers_per_block):
            pairs.append((f"down_blocks.{i}.resnets.{j}.", f"input_blocks.{1 + i * per + j}.0.", UNET_RESNET))
            if "CrossAttn" in kind:
                pairs.append((f"down_blocks.{i}.attentions.{j}.", f"input_blocks.{1 + i * per + j}.1.", None))
        pairs.append((f"down_blocks.{i}.downsamplers.0.conv.", f"input_blocks.{(i + 1) * per}.0.op.", None))
    pairs += [
        ("mid_block.resnets.0.", "middle_block.0.", UNET_RESNET),
        ("mid_block.attentions.0.", "middle_block.1.", None),
        ("mid_block.resnets.1.", "middle_block.2.", UNET_RESNET),
    ]
    for i, kind in enumerate(config.up_block_types):
        attention = "CrossAttn" in kind
        for j in range(per):
            pairs.append((f"up_blocks.{i}.resnets.{j}.", f"output_blocks.{i * per + j}.0.", UNET_RESNET))
            if attention:
                pairs.append((f"up_blocks.{i}.attentions.{j}.", f"output_blocks.{i * per + j}.1.", None))
        slot = 2 if attention else 1
        pairs.append((f"up_blocks.{i}.upsamplers.0.conv.", f"output_blocks.{i * per + per - 1}.{slot}.conv.", None))
    return {old: (new, names) for old, new, names in pairs}


def vae_key_map(config) -> dict[str, tuple[str, dict | None]]:
    """diffusers VAE block prefixes -> LDM ones (the decoder's up blocks count from the other end)."""
    n = len(config.block_out_channels)
    shortcut = {"conv_shortcut": "nin_shortcut"}
    pairs = []
    for i in range(n):
        for j in range(config.layers_per_block):
            pairs.append((f"encoder.down_blocks.{i}.resnets.{j}.", f"encoder.down.{i}.block.{j}.", shortcut))
        pairs.append((f"encoder.down_blocks.{i}.downsamplers.0.conv.", f"encoder.down.{i}.downsample.conv.", None))
        for j in range(config.layers_per_block + 1):
            pairs.append((f"decoder.up_blocks.{i}.resnets.{j}.", f"decoder.up.{n - 1 - i}.block.{j}.", shortcut))
        pairs.append((f"decoder.up_blocks.{i}.upsamplers.0.conv.", f"decoder.up.{n - 1 - i}.upsample.conv.", None))
    for part in ("encoder", "decoder"):
        pairs += [(f"{part}.mid_block.resnets.{j}.", f"{part}.mid.block_{j + 1}.", shortcut) for j in range(2)]
        pairs.append((f"{part}.mid_block.attentions.0.", f"{part}.mid.attn_1.", VAE_ATTENTION))
    return {old: (new, names) for old, new, names in pairs}


def _convert(state: dict, top: dict[str, str], blocks: dict, prefix: str) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state.items():
        if key in top:
            out[prefix + top[key]] = value
            continue
        for old, (new, names) in blocks.items():
            mapped = _swap(key, old, new, names)
            if mapped is not None:
                out[prefix + mapped] = value
                break
        else:  # the same name in both layouts (top-level convs, quant convs, transformer internals)
            out[prefix + key] = value
    return out


def _unet_and_vae(unet, vae) -> dict[str, torch.Tensor]:
    from diffusers.loaders.single_file_utils import DIFFUSERS_TO_LDM_MAPPING

    unet_top = dict(DIFFUSERS_TO_LDM_MAPPING["unet"]["layers"])
    if unet.config.addition_embed_type:  # SDXL's text-time embedding
        unet_top.update(DIFFUSERS_TO_LDM_MAPPING["unet"]["addition_embed_type"])
    state = _convert(unet.state_dict(), unet_top, unet_key_map(unet.config), UNET)
    vae_state = _convert(vae.state_dict(), DIFFUSERS_TO_LDM_MAPPING["vae"], vae_key_map(vae.config), VAE)
    for key, value in vae_state.items():
        if ".mid.attn_1." in key and key.endswith(".weight") and value.ndim == 2:
            vae_state[key] = value[:, :, None, None]  # LDM's VAE attention is 1x1 convolutions
    return state | vae_state


def _clip_text(text_encoder, prefix: str) -> dict[str, torch.Tensor]:
    """transformers' CLIP text model under `prefix`, nested under text_model. as the original layout has it
    (transformers >= 5.6 flattened CLIPTextModel's own keys)."""
    return {
        prefix + (k if k.startswith("text_model.") else "text_model." + k): v
        for k, v in text_encoder.state_dict().items()
    }


def _open_clip_text(text_encoder) -> dict[str, torch.Tensor]:
    """SDXL's second text encoder (transformers' CLIPTextModelWithProjection) in OpenCLIP's layout: the inverse of
    diffusers' `convert_open_clip_checkpoint`."""
    state = {k.removeprefix("text_model."): v for k, v in text_encoder.state_dict().items()}
    out = {XL_OPEN_CLIP + "text_projection": state.pop("text_projection.weight").T.contiguous()}
    out |= {XL_OPEN_CLIP + new: state.pop(old) for old, new in OPEN_CLIP_TOP.items()}
    layers = sorted({int(k.split(".")[2]) for k in state if k.startswith("encoder.layers.")})
    for i in layers:
        ours, theirs = f"encoder.layers.{i}.", f"{XL_OPEN_CLIP}transformer.resblocks.{i}."
        for kind in ("weight", "bias"):
            qkv = [state.pop(f"{ours}self_attn.{p}_proj.{kind}") for p in "qkv"]
            out[f"{theirs}attn.in_proj_{kind}"] = torch.cat(qkv)
        for key in [k for k in state if k.startswith(ours)]:
            rest = key[len(ours) :]
            old = next(o for o in OPEN_CLIP_LAYER if rest.startswith(o))
            out[theirs + OPEN_CLIP_LAYER[old] + rest[len(old) :]] = state.pop(key)
    if state:
        raise ValueError(f"no OpenCLIP name for the second text encoder's {sorted(state)[:3]}")
    return out


def to_original(unet, vae, text_encoder, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """One state dict in the original layout: UNet, VAE (attention projections as 1x1 convs) and the text
    encoder(s): SD's under cond_stage_model., SDXL's two under conditioner.embedders.0 / .1."""
    state = _unet_and_vae(unet, vae)
    parts = getattr(text_encoder, "parts", None)  # SDXL: hifilight.models.sdxl.DualTextEncoder
    if parts:
        state |= _clip_text(parts[0], XL_TEXT) | _open_clip_text(parts[1])
    else:
        state |= _clip_text(text_encoder, TEXT)
    return {k: v.detach().to(dtype).contiguous() for k, v in state.items()}


def save_checkpoint(comps, path: Path, dtype: torch.dtype = torch.float32, overwrite: bool = False) -> int:
    """Write `path` (atomically); return the number of tensors."""
    from safetensors.torch import save_file

    from hifilight.io import write_atomic

    state = to_original(comps.unet, comps.vae, comps.text_encoder, dtype)
    write_atomic(Path(path), lambda tmp: save_file(state, str(tmp), metadata={"format": "pt"}), overwrite=overwrite)
    return len(state)

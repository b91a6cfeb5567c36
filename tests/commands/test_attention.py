"""`hifilight attention`: the paper's Figure 3 and its refusals."""

import pytest
import torch
from PIL import Image

from hifilight.cli import main


def test_attention_figure(fitted, tmp_path):
    out = tmp_path / "fig3.png"
    args = [
        "attention",
        "--subject",
        str(fitted),
        "--prompt",
        "a sitting {} dog",
        "--show_steps",
        "3,1",
        "--steps",
        "3",
        "--out",
        str(out),
    ]
    assert main(args) == 0
    width, height = Image.open(out).size
    assert width == 60 + 5 * 96 and height == 2 * 96 + 4 + 2 * 96  # image, then 2 steps x 5 token maps
    assert main(args) == 2  # no silent overwrite


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--show_steps", "0,4"], "each step must be in 1..3"),
        (["--show_steps", "a,b"], "separated by commas"),
        (
            ["--show_steps", "3,1", "--res", "16"],
            "--res 16: at 32 px this model's cross-attention maps are [2, 4] wide",
        ),
    ],
)
def test_attention_bad_steps(fitted, tmp_path, capsys, extra, message):
    args = [
        "attention",
        "--subject",
        str(fitted),
        "--prompt",
        "a {}",
        "--steps",
        "3",
        "--out",
        str(tmp_path / "a.png"),
    ]
    assert main([*args, *extra]) == 2
    assert message in capsys.readouterr().err


def test_cross_attention_sizes_match_what_the_unet_records(tiny):
    from hifilight.sampling.attention import AttentionStore, attention_control, cross_attention_sizes

    store = AttentionStore({0}, [1])
    latents = torch.zeros(1, 4, 8, 8)
    with attention_control(tiny.unet, store), torch.no_grad():
        store.step = 0
        tiny.unet(latents, torch.tensor([10]), encoder_hidden_states=torch.zeros(1, 77, 32))
    assert cross_attention_sizes(tiny.unet.config, 8) == sorted(store.sizes)

"""`hifilight toyworld train toyclip`: ToyCLIP trained on (or continued on) ToyWorld's corpus, with hard negatives
if asked, and what it reads of each attribute before and after (`toyclip.attribute_accuracy`), recorded in the new
folder's `training.json`.

ToySD v2's UNet reads ToyCLIP's frozen text tower: a tower that cannot tell "square" from "circle" gives the UNet
nearly one state for both, and it then draws circles for squares. Continuing ToyCLIP with hard negatives makes the
words it confused distinct; the UNet continues from its checkpoint with the new tower (`toysd2 --resume true`
after the new folder replaces `<world_dir>/toyclip`).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from hifilight.errors import HifiError
from hifilight.io import check_output_path
from hifilight.toyworld import toyclip, world
from hifilight.toyworld.corpus import render_corpus
from hifilight.toyworld.tokenizer import tokenize


@dataclass
class ToyCLIPArgs:
    """Options of `hifilight toyworld train toyclip`."""

    to: Path
    """Folder for the new ToyCLIP (Hugging Face layout, with training.json)."""
    world_dir: Path = Path("outputs/toysd_v2")
    """The ToySD v2 run folder: its world (object sizes) and, with --init true, the ToyCLIP to continue."""
    init: bool = True
    """Continue <world_dir>/toyclip (false: train a new one from --seed)."""
    train_steps: int = 1000
    """Contrastive training steps (named apart from the sampler's --steps, which the limits table bounds)."""
    batch: int = 128
    lr: float = 3e-4
    hard_negatives: bool = True
    """A caption per image with its shape or pattern word swapped, as an extra negative (toyclip.swap_negatives)."""
    shape_weight: float = 0.0
    """Weight of a supervised shape and pattern cross-entropy on the image embedding (toyclip.shape_loss; 0: off)."""
    images: int = 40000
    """Renders in the corpus (the UNet's corpus with the same --seed)."""
    partial_captions: float = 0.2
    eval_images: int = 256
    """Fresh renders (a seed no training used) the attribute reading and retrieval are measured on."""
    seed: int = 0
    threads: int = 1
    overwrite: bool = False

    def check(self) -> None:
        if not (Path(self.world_dir) / "toyclip" / "config.json").is_file() and self.init:
            raise HifiError(
                f"--world_dir {self.world_dir}: no toyclip/ to continue; pass --init false or the run's --out"
            )
        for name in ("train_steps", "batch", "images", "eval_images"):
            if getattr(self, name) < 1:
                raise HifiError(f"--{name} must be >= 1, got {getattr(self, name)}")
        check_output_path(Path(self.to), self.overwrite, "--to", folder=True)


def train(args: ToyCLIPArgs, log=print) -> dict:
    """Train, measure before and after on fresh renders, save to --to; returns the record."""
    from hifilight.toyworld.tokenizer import toy_tokenizer
    from hifilight.toyworld.toysd2 import caption

    args.check()
    torch.set_num_threads(args.threads)
    with world.using("v2", args.world_dir):
        tokenizer = toy_tokenizer()
        model = toyclip.load(Path(args.world_dir) / "toyclip")[0] if args.init else toyclip.build(tokenizer, args.seed)
        images, scenes, _ = render_corpus(args.images, args.seed + 1)
        fresh, fresh_scenes, _ = render_corpus(args.eval_images, args.seed + 99)

        def ids(captions):
            return tokenize(tokenizer, captions)

        before = toyclip.attribute_accuracy(model, ids, fresh, fresh_scenes)
        separation_before = toyclip.word_separation(model, ids)
        log(f"toyclip before: {before}, word separation {separation_before}")
        start = time.perf_counter()
        toyclip.train(model, ids, images, scenes, lambda s, r: caption(s, r, args.partial_captions), args.train_steps,
                      args.batch, args.lr, args.seed, log, "cpu", args.hard_negatives, args.shape_weight)  # fmt: skip
        after = toyclip.attribute_accuracy(model, ids, fresh, fresh_scenes)
        separation_after = toyclip.word_separation(model, ids)
        retrieval = toyclip.retrieval_accuracy(model, ids, fresh, [s.caption for s in fresh_scenes])
    record = {
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(args).items()},
        "minutes": round((time.perf_counter() - start) / 60, 1),
        "attribute_accuracy_before": before,
        "attribute_accuracy_after": after,
        "word_separation_before": separation_before,
        "word_separation_after": separation_after,
        "retrieval_full_captions": round(retrieval, 3),
    }
    log(f"toyclip after: {after}, word separation {separation_after}, retrieval {retrieval:.3f}")
    toyclip.save(model, tokenizer, Path(args.to), overwrite=args.overwrite, record=record)  # one atomic write
    return record

"""What `--subject` can be, for generation: the output of `hifilight fit` with any method.

- a HiFi subject artifact (`c_s`, optional `c_s^t`; `hifilight.artifacts`): prompts keep the class word and the
  embedding is spliced into the conditioning;
- a Textual Inversion token embedding (`hifilight.token_embeddings`): its token(s) are added to the tokenizer and
  stand for the subject in prompts ("a <sks> dog on the beach");
- a DreamBooth model folder (`hifilight.training.dreambooth`): it is the base model, and the identifier stands for
  the subject ("a sks dog on the beach");
- a LoRA file (`hifilight.training.lora`): diffusers' `load_lora_weights` puts its adapters on the base model, and
  the identifier stands for the subject.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from safetensors import SafetensorError, safe_open

from hifilight.artifacts import FORMAT as SUBJECT_FORMAT
from hifilight.artifacts import SubjectArtifact
from hifilight.errors import HifiError
from hifilight.token_embeddings import TokenEmbedding
from hifilight.validation import check_common_metadata, header_json

LORA_FORMAT = "hifilight.lora"  # the header format of a LoRA subject (hifilight.training.lora writes it)


@dataclass
class Subject:
    kind: str  # "hifi" | "textual_inversion" | "dreambooth" | "lora"
    class_name: str
    identifier: str  # word(s) before the class word in prompts ("" for HiFi embeddings)
    base_model: str  # the model to load by default
    resolution: int
    artifact: SubjectArtifact | None = None
    embedding: TokenEmbedding | None = None
    lora: Path | None = None  # the LoRA file, loaded onto the components by `prepare`

    @classmethod
    def of_artifact(cls, art: SubjectArtifact) -> Subject:
        """A HiFi Tuner subject from its artifact (loaded from a file, or held by a training module)."""
        meta = art.metadata
        return cls(
            "hifi", art.class_name, "", meta.get("base_model", "tiny"), meta.get("resolution", 512), artifact=art
        )

    @property
    def word(self) -> str:
        """What `{}` in a prompt becomes."""
        return f"{self.identifier} {self.class_name}".strip()

    def stepwise(self, requested: bool | None = None) -> bool:
        """Whether to sample with the step-wise embeddings c_s^t (Eq. 7): `requested`, or by default when the
        subject has them (HiFi artifacts fitted with the step-wise stage); asking for them without them is refused."""
        if self.artifact is not None:
            if requested and self.artifact.c_s_t is None:
                raise HifiError(
                    "--stepwise true: this subject artifact has no step-wise embeddings; fit it with "
                    "--model.stepwise_steps > 0, or pass --stepwise false to sample with c_s"
                )
            return self.artifact.c_s_t is not None if requested is None else requested
        if requested:
            raise HifiError(f"--stepwise true: a {self.kind} subject has no step-wise embeddings; drop the flag")
        return False

    def prepare(self, comps, adapter: str = "subject") -> None:
        """Make the loaded components ready for this subject: add Textual Inversion tokens, or load the LoRA file
        onto the UNet as the adapter named `adapter` (the last one loaded is the active one)."""
        if self.embedding is not None:
            self.embedding.apply(comps.tokenizer, comps.text_encoder)
        if self.lora is not None:  # exactly what a diffusers user does: the pipeline shares our modules
            from diffusers import StableDiffusionPipeline

            pipe = StableDiffusionPipeline(
                comps.vae,
                comps.text_encoder,
                comps.tokenizer,
                comps.unet,
                comps.scheduler,
                None,
                None,
                requires_safety_checker=False,
            )
            from diffusers.utils import logging

            level = logging.get_verbosity()
            # quiet: "no LoRA keys for the text encoder" (none are meant to be there), and a failed load's state_dict
            # dump, which the one-line error below replaces
            logging.set_verbosity(logging.CRITICAL)
            try:
                pipe.load_lora_weights(str(self.lora), adapter_name=adapter)
            except (RuntimeError, ValueError) as err:  # shape mismatch or unknown modules: another base model
                first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
                raise HifiError(
                    f"--subject {self.lora}: its LoRA does not fit this base model's UNet ({first}); it was trained on "
                    f"{self.base_model}: pass --model.pretrained {self.base_model}"
                ) from None
            finally:
                logging.set_verbosity(level)


def load_subject(path: Path) -> Subject:
    path = Path(path).expanduser()
    if path.is_dir():
        meta_path = path / "hifilight.json"
        if not meta_path.is_file():
            raise HifiError(f"--subject {path}: a folder, but not a DreamBooth model written by `hifilight fit`")
        source = f"--subject {path}"
        try:
            meta = json.loads(meta_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise HifiError(f"{source}: hifilight.json is not valid JSON; the folder is damaged") from None
        if not isinstance(meta, dict) or not isinstance(meta.get("identifier"), str):
            raise HifiError(f"{source}: hifilight.json must be an object with 'identifier' and 'class_name'")
        check_common_metadata(meta, source)
        return Subject("dreambooth", meta["class_name"], meta["identifier"], str(path), meta.get("resolution", 512))
    header = _header(path)
    if header.get("format") == LORA_FORMAT:
        check_common_metadata(header, f"--subject {path}")
        return Subject(
            "lora",
            header["class_name"],
            header.get("identifier", "sks"),
            header["base_model"],
            header.get("resolution", 512),
            lora=path,
        )
    if header.get("format") == SUBJECT_FORMAT:
        return Subject.of_artifact(SubjectArtifact.load(path))
    emb = TokenEmbedding.load(path)
    if "class_name" not in emb.metadata:
        raise HifiError(f"--subject {path}: a token embedding without hifilight metadata; fit it with hifilight")
    meta = emb.metadata
    return Subject(
        "textual_inversion",
        meta["class_name"],
        emb.prompt_text,
        meta.get("base_model", "tiny"),
        meta.get("resolution", 512),
        embedding=emb,
    )


def _header(path: Path) -> dict:
    if not path.is_file():
        raise HifiError(f"--subject {path}: no such file; pass the .safetensors (or folder) written by `hifilight fit`")
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as err:
        raise HifiError(f"--subject {path}: not a readable safetensors file ({err})") from err
    return header_json(header, "hifilight", f"--subject {path}")

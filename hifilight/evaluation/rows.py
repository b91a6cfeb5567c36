"""The rows of the evaluation tables: what each method row fits and how it samples (`Row`), the paper's Table 1 and
Table 2 ladders and the LoRA rows (`method_rows`), and picking some of them by name (`select_rows`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from hifilight.errors import HifiError


@dataclass(frozen=True)
class Row:
    """One line of the results table: a method and its switches."""

    name: str  # folder-safe key
    label: str  # as printed in the table
    kind: str  # "real" (real-vs-real), "sd" (base model, no subject), or the fit method: training.fit_cli.METHODS
    mask: bool = True
    regularizer: bool = True
    stepwise: bool = True
    reference: bool = False
    base: str | None = None  # the row this one adds one technique to (an ablation step), by name

    @property
    def artifact_key(self) -> str:
        """The fitted output this row uses (rows that differ only in sampling share it). A HiFi fit always runs
        Algorithm 1's step-wise stage after stage 1, and the artifact keeps both c_s and c_s^t: "+ step-wise" and
        the row below it (sampled with c_s alone) are then the same fit, so their paired difference isolates the
        step-wise stage, and one fit serves both."""
        if self.kind == "hifi_ti":
            return f"mask{int(self.mask)}_reg{int(self.regularizer)}.safetensors"
        if self.kind == "textual_inversion":
            return "textual_inversion_mask.safetensors" if self.mask else "textual_inversion.safetensors"
        if self.kind == "lora":
            return "lora_mask.safetensors" if self.mask else "lora.safetensors"
        return "dreambooth"

    @property
    def fits(self) -> bool:
        """Whether the row learns a subject (its kind is then the `hifilight fit --method` that does it)."""
        return self.kind not in ("real", "sd")


METHODS = ("hifi_ti", "textual_inversion", "dreambooth", "hifi_dreambooth", "sd", "real", "table1", "table2",
           "ti_vs_ours", "table2_dreambooth", "lora", "lora_ladder", "table2_lora")  # fmt: skip
REAL, SD = Row("real", "Real images", "real"), Row("sd", "Stable Diffusion (no subject)", "sd")
TI = Row("textual_inversion", "Textual Inversion", "textual_inversion", False, False, False)
DB = Row("dreambooth", "DreamBooth", "dreambooth", False, False, False)
HIFI_DB = Row("hifi_dreambooth", "Ours (DreamBooth)", "dreambooth", False, False, False, True)

# The paper's Table 2 (Sec. 4, "Ablation studies"), one technique per row, each row's `base` the one above it:
# Textual Inversion (an input-space token, Eq. 2) -> + mask (the same token with Eq. 5) -> + regularization (Sec.
# 3.2: the subject moves to the output space, c_s initialised from phi_s and spliced into the last n rows of the
# null text's encoding, with the L2 pull of Eq. 6) -> + step-wise representations (Algorithm 1) -> + reference
# guidance (Algorithm 2); DreamBooth -> + reference guidance. The extra row (not the paper's) separates the move to
# the output space from the L2 term: output-space c_s with the mask and no regulariser, against "+ mask".
TABLE2 = [
    Row("textual_inversion", "Baseline (Textual Inversion)", "textual_inversion", False, False, False),
    Row("ti_mask", "+ mask", "textual_inversion", True, False, False, base="textual_inversion"),
    Row("regularization", "+ regularization", "hifi_ti", True, True, False, base="ti_mask"),
    Row("stepwise", "+ step-wise representations", "hifi_ti", True, True, True, base="regularization"),
    Row("reference", "+ reference guidance", "hifi_ti", True, True, True, True, base="stepwise"),
    Row("output_space", "(extra) output-space c_s + mask, no reg.", "hifi_ti", True, False, False, base="ti_mask"),
]
TABLE2_DREAMBOOTH = [
    Row("dreambooth", "Baseline (DreamBooth)", "dreambooth", False, False, False),
    Row("hifi_dreambooth", "+ reference guidance", "dreambooth", False, False, False, True, base="dreambooth"),
]


# LoRA subjects (not in the paper): DreamBooth-style LoRA -> + mask (Eq. 5, HiFi Tuner's first technique) ->
# + reference guidance (Algorithm 2), next to DreamBooth so the size-versus-fidelity trade is measured: in a table
# with DreamBooth's row ("table2_lora"), "LoRA" is a step from it (adapters instead of the whole UNet).
LORA_LADDER = [
    Row("lora", "LoRA", "lora", False, False, False, base="dreambooth"),
    Row("lora_mask", "+ mask", "lora", True, False, False, base="lora"),
    Row("lora_reference", "+ reference guidance", "lora", True, False, False, True, base="lora_mask"),
]


def method_rows(method: str, mask=True, regularizer=True, stepwise=True, reference=False) -> list[Row]:
    """The rows a --method runs. "table1" = the paper's Table 1, "table2" = its ablation ladder (TABLE2), and
    "table2_dreambooth" = the ladder and its DreamBooth rows."""
    hifi = Row("hifi_ti", "Ours (Textual Inversion)", "hifi_ti", mask, regularizer, stepwise, reference)
    ours_ti = Row("hifi_ti", "Ours (Textual Inversion)", "hifi_ti", True, True, True, True)
    rows = {
        "hifi_ti": [hifi],
        "textual_inversion": [TI],
        "dreambooth": [DB],
        "hifi_dreambooth": [HIFI_DB],
        "sd": [SD],
        "real": [REAL],
        "table1": [REAL, SD, TI, ours_ti, DB, HIFI_DB],
        "ti_vs_ours": [TI, dataclasses.replace(ours_ti, base=TI.name)],
        "table2": TABLE2,
        "table2_dreambooth": TABLE2 + TABLE2_DREAMBOOTH,
        "lora": LORA_LADDER[:1],
        "lora_ladder": LORA_LADDER,
        "table2_lora": TABLE2 + TABLE2_DREAMBOOTH + LORA_LADDER,
    }
    if method not in rows:
        raise HifiError(f"--method {method}: unknown; use one of {', '.join(METHODS)}")
    return list(rows[method])


def select_rows(rows: list[Row], names: list[str] | None) -> list[Row]:
    """The named rows of a table, in the table's order (all of them for None); ValueError naming the choices."""
    if names is None:
        return rows
    if not names or any(n not in {r.name for r in rows} for n in names):
        raise ValueError(f"--rows {names}: use names of the table's rows: {', '.join(r.name for r in rows)}")
    return [r for r in rows if r.name in names]

"""ToySD's tokenizer: a CLIP BPE tokenizer whose merges are learnt on ToyWorld's words, so each of them is one token
(any other word falls back to characters), with 32-token contexts (room for HiFi Tuner's n=5 subject rows after
every caption)."""

from __future__ import annotations

import torch
from transformers import CLIPTokenizer

from hifilight.models.tiny import BOS, EOS, bytes_to_unicode
from hifilight.toyworld.scenes import BACKGROUNDS, COLORS, SHAPES

MAX_LENGTH = 32
EXTRA_WORDS = ("a", "an", "photo", "of", "the", "with", "and", "sks", "striped", "dotted", "checkered", "plain",
               "stripes", "dots", "checks", "object", "picture", "toy")  # fmt: skip


def vocabulary_words() -> list[str]:
    words = set(EXTRA_WORDS) | set(COLORS) | set(SHAPES)
    for phrase in BACKGROUNDS.values():
        words |= set(phrase.split())
    return sorted(words)


def learn_merges(words: list[str]) -> list[tuple[str, str]]:
    """Byte-pair merges learnt on `words` (most frequent pair first, ties by name) until each is one symbol: BPE
    then encodes each of these words to one token, and any other word to the pieces the merges allow."""
    symbols = [tuple(w[:-1]) + (w[-1] + "</w>",) for w in words]
    merges = []
    while any(len(s) > 1 for s in symbols):
        counts: dict[tuple[str, str], int] = {}
        for s in symbols:
            for pair in zip(s, s[1:], strict=False):
                counts[pair] = counts.get(pair, 0) + 1
        best = min(counts, key=lambda p: (-counts[p], p))
        merges.append(best)
        symbols = [_merge(s, best) for s in symbols]
    return merges


def _merge(word: tuple[str, ...], pair: tuple[str, str]) -> tuple[str, ...]:
    out, i = [], 0
    while i < len(word):
        if word[i : i + 2] == pair:
            out.append(word[i] + word[i + 1])
            i += 2
        else:
            out.append(word[i])
            i += 1
    return tuple(out)


def toy_tokenizer() -> CLIPTokenizer:
    """A CLIP BPE tokenizer whose merges are learnt on ToyWorld's words, so each of them is one token."""
    alphabet = list(bytes_to_unicode().values())
    tokens = alphabet + [c + "</w>" for c in alphabet]
    merges = learn_merges(vocabulary_words())
    tokens += [a + b for a, b in merges if a + b not in tokens]
    vocab = {tok: i for i, tok in enumerate(tokens + [BOS, EOS])}
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=MAX_LENGTH, pad_token=EOS)


def tokenize(tokenizer: CLIPTokenizer, captions: list[str]) -> torch.Tensor:
    return tokenizer(
        captions, padding="max_length", max_length=MAX_LENGTH, truncation=True, return_tensors="pt"
    ).input_ids

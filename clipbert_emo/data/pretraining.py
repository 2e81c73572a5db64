"""Image-text pairs for ClipBERT's pretraining: matched/mismatched pairs (ITM) and BERT masking (MLM).

Every random choice (which caption replaces the true one, which tokens are masked and how)
is drawn from a generator seeded by (seed, epoch, index), as for fine-tuning data, so a
pretraining run is reproducible whatever the worker count and resumes exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .dataset import Collator, VideoTextDataset


class ImageTextPairDataset(VideoTextDataset):
    """A manifest of (image or video, caption) pairs; with probability ``negative_prob`` the caption
    is replaced by another pair's caption and the pair is labelled mismatched (itm_label 0)."""

    def __init__(self, manifest, cfg, seed: int = 0, negative_prob: float = 0.5, training: bool = True):
        super().__init__(manifest, cfg, training=training, num_clips=1, seed=seed)  # pairs carry no task label
        self.negative_prob = negative_prob

    def __getitem__(self, index: int) -> dict:
        item = super().__getitem__(index)
        rng = np.random.default_rng([self.seed, self.epoch, index, 1])
        item["itm_label"] = 1
        own = self.samples[index].text
        if len(self.samples) > 1 and rng.random() < self.negative_prob:
            # A few draws find a caption that differs in wording; identical captions of two
            # images would make a "mismatched" pair that actually matches.
            for _ in range(8):
                j = int(rng.integers(len(self.samples) - 1))
                j += j >= index  # any index but our own
                if self.samples[j].text != own:
                    item["text"] = self.samples[j].text
                    item["itm_label"] = 0
                    break
        item["mask_seed"] = int(rng.integers(2**31 - 1))
        return item


def mask_tokens(input_ids: torch.Tensor, attention_mask: torch.Tensor, special_ids: set[int], mask_id: int,
                vocab_size: int, probability: float, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's masking of one sequence (L,): pick ``probability`` of the real (non-special, non-pad)
    tokens; of those 80% become [MASK], 10% a random token, 10% stay. At least one token is picked
    when the text has any, since captions are short. Returns (masked ids, labels with -100 elsewhere)."""
    ids = input_ids.clone()
    labels = torch.full_like(ids, -100)
    candidates = [i for i, (t, m) in enumerate(zip(ids.tolist(), attention_mask.tolist())) if m and t not in special_ids]
    if not candidates:
        return ids, labels
    cand = torch.tensor(candidates)
    picked = cand[torch.rand(len(cand), generator=generator) < probability]
    if len(picked) == 0:
        picked = cand[torch.randint(len(cand), (1,), generator=generator)]
    labels[picked] = ids[picked]
    action = torch.rand(len(picked), generator=generator)
    ids[picked[action < 0.8]] = mask_id
    random_pos = picked[(action >= 0.8) & (action < 0.9)]
    ids[random_pos] = torch.randint(vocab_size, (len(random_pos),), generator=generator)
    return ids, labels


@dataclass
class ImageTextCollator(Collator):
    """The fine-tuning collator's batch plus ``mlm_labels`` (B, L) and ``itm_labels`` (B,)."""

    mlm_probability: float = 0.15

    def __call__(self, items: list[dict]) -> dict:
        batch = super().__call__(items)
        if "input_ids" not in batch:
            return batch
        kept = [it for it in items if "error" not in it]
        tok = self.tokenizer
        special = set(tok.all_special_ids)
        masked, labels = [], []
        for row, it in enumerate(kept):
            g = torch.Generator().manual_seed(it["mask_seed"])
            ids, lab = mask_tokens(batch["input_ids"][row], batch["attention_mask"][row], special,
                                   tok.mask_token_id, len(tok), self.mlm_probability, g)
            masked.append(ids)
            labels.append(lab)
        batch["input_ids"] = torch.stack(masked)  # B x (L,) -> (B, L)
        batch["mlm_labels"] = torch.stack(labels)  # B x (L,) -> (B, L)
        batch["itm_labels"] = torch.tensor([it["itm_label"] for it in kept], dtype=torch.long)  # (B,)
        return batch

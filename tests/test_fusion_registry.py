"""A fusion strategy defined here, outside the library, trains, evaluates and predicts through the command line once
registered: the class and one ``register_fusion`` call are the whole of it (models/registry.py), as a task kind is
its class and ``register_task`` (test_task_registry.py)."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn as nn
from einops import repeat

from clipbert_emo.cli import main
from clipbert_emo.config import ConfigError, load_config
from clipbert_emo.models.fusion import output_head
from clipbert_emo.models.registry import FUSION_STRATEGIES, check_fusion, register_fusion, unregister_fusion
from clipbert_emo.models.scorer import ClipScorer, Refusal, ScoredClips
from support import TINY_OVERRIDES, data_overrides


class MeanOfModalities(ClipScorer):
    """Toy strategy: each modality pooled on its own (the text: the mean of its word embeddings; a per-clip modality:
    the mean of its encoder's output over everything but the width), the pooled vectors averaged over the modalities
    a sample has, one head. Scores one text per video (``text_pairs = False``: the base repeats each video's clips
    for each of its texts)."""

    reads = ("text", "video")
    text_pairs = False
    refused_tasks = {"retrieval": Refusal("a mean of pooled vectors barely lets a caption meet the clips")}

    def __init__(self, cfg, num_labels, vocab_size, *, pad_token_id=0, pretrained=True, criterion=None,
                 modalities=("video",), use_text=True, build_head=None, inference=False):
        super().__init__()
        self._setup(cfg, num_labels, vocab_size, criterion, use_text, modalities, pretrained)
        self.words = nn.Embedding(vocab_size, cfg.hidden_size, padding_idx=pad_token_id) if use_text else None
        self.head = output_head(cfg, num_labels, build_head)
        self._build_visual_aux()

    def _score_clips(self, input_ids, attention_mask, inputs, features=None) -> ScoredClips:
        features, present, n = self.encode_inputs(input_ids, inputs, features)
        pooled, weights = [], []
        if self.use_text:
            mask = attention_mask.unsqueeze(-1).float()  # (B, L) -> (B, L, 1)
            text = (self.words(input_ids) * mask).sum(1) / mask.sum(1).clamp_min(1.0)  # (B, L, D) -> (B, D)
            pooled.append(repeat(text, "b d -> b n d", n=n))  # (B, D) -> (B, N, D)
            weights.append(present["text"])
        for name, f in features.items():
            pooled.append(f.flatten(3).mean(-1))  # (B, N, D, ...) -> (B, N, D)
            weights.append(present[name])
        w = torch.stack(weights, dim=1).float()  # M x (B,) -> (B, M)
        stacked = torch.stack(pooled, dim=2)  # M x (B, N, D) -> (B, N, M, D)
        mean = torch.einsum("bnmd,bm->bnd", stacked, w / w.sum(1, keepdim=True).clamp_min(1.0))  # -> (B, N, D)
        return ScoredClips(self.head(mean), features, present)  # (B, N, D) -> (B, N, K)


@pytest.fixture
def registered():
    register_fusion("toy_mean", MeanOfModalities)
    try:
        yield
    finally:
        unregister_fusion("toy_mean")
    assert "toy_mean" not in FUSION_STRATEGIES


def test_a_strategy_defined_outside_the_library_trains_evaluates_and_predicts(registered, synthemo_dir, tmp_path,
                                                                               capsys):
    run = tmp_path / "run"
    rc = main(["finetune", "-q", *TINY_OVERRIDES, *data_overrides(synthemo_dir), f"train.output_dir={run}",
               "model.fusion=toy_mean", "train.epochs=2"])
    assert rc == 0, capsys.readouterr().err
    capsys.readouterr()
    metrics = json.loads((run / "metrics.json").read_text())
    assert len(metrics["step_losses"]) == 8 and all(torch.isfinite(torch.tensor(metrics["step_losses"])))
    assert load_config(run / "checkpoint" / "config.yaml").model.fusion == "toy_mean"

    rc = main(["evaluate", str(run / "checkpoint"), str(synthemo_dir / "test.jsonl"), "--n-test", "2", "--json",
               "-q", "--out", str(tmp_path / "eval")])
    assert rc == 0
    result = json.loads(capsys.readouterr().out)
    assert result["num_samples"] == 6 and 0 <= result["reports"]["lse"]["accuracy"] <= 1

    video = synthemo_dir / "videos" / "test" / "000000.mp4"
    rc = main(["predict", str(run / "checkpoint"), str(video), "--text", "oh wow", "--n-test", "2", "--json", "-q"])
    assert rc == 0
    prediction = json.loads(capsys.readouterr().out)
    assert prediction["prediction"] in load_config(run / "checkpoint" / "config.yaml").data.labels
    assert len(prediction["clips"]) == 2


def test_its_declarations_refuse_what_it_does_not_support(registered, synthemo_dir, tmp_path, capsys):
    def cfg(*extra):
        return load_config(None, [*TINY_OVERRIDES, "model.fusion=toy_mean", *extra])

    with pytest.raises(ConfigError, match=r"model\.fusion=toy_mean cannot read audio .*data\.use_audio=false"):
        check_fusion(cfg("data.use_audio=true"))
    with pytest.raises(ConfigError, match=r"model\.fusion=toy_mean cannot be used with data\.task=retrieval: a mean"):
        check_fusion(cfg("data.task=retrieval"))
    # through the command line: one line, exit 2, nothing trained
    rc = main(["finetune", "-q", *TINY_OVERRIDES, *data_overrides(synthemo_dir), f"train.output_dir={tmp_path / 'r'}",
               "model.fusion=toy_mean", "data.use_audio=true"])
    assert rc == 2 and "model.fusion=toy_mean cannot read audio" in capsys.readouterr().err
    assert not (tmp_path / "r" / "checkpoint").exists()
    with pytest.raises(ValueError, match="already registered"):
        register_fusion("toy_mean", MeanOfModalities)


def test_a_strategy_that_scores_one_text_per_video_gets_p_texts_from_the_base(registered):
    """``text_pairs = False``: texts (B, P, L) give each text the logits it gets alone (the base repeats the clips)."""
    from clipbert_emo.build import build_model

    cfg = load_config(None, [*TINY_OVERRIDES, "model.fusion=toy_mean", "data.task=qa_mc"])
    torch.manual_seed(0)
    model = build_model(cfg, 50).eval()
    g = torch.Generator().manual_seed(0)
    ids, mask = torch.randint(5, 50, (2, 3, 6), generator=g), torch.ones(2, 3, 6, dtype=torch.long)
    video = torch.randint(0, 255, (2, 2, 2, 3, 32, 32), generator=g, dtype=torch.uint8)
    paired = model.clip_logits(ids, mask, video)  # (B, N, P*K)
    alone = torch.cat([model.clip_logits(ids[:, p], mask[:, p], video) for p in range(3)], dim=-1)  # P x (B, N, K)
    assert paired.shape == (2, 2, 3)
    torch.testing.assert_close(paired, alone)


def test_the_registry_is_the_one_list_of_names(registered):
    """compare-fusion's --strategies offers the registered names, the toy one included."""
    from clipbert_emo.cli import build_parser

    args = build_parser().parse_args(["compare-fusion", "--strategies", "early", "toy_mean"])
    assert args.strategies == ["early", "toy_mean"]
    with pytest.raises(SystemExit):
        build_parser().parse_args(["compare-fusion", "--strategies", "mid"])

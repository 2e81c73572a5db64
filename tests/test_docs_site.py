"""The documentation site (mkdocs.yml, `make docs`): it builds offline with --strict and no warning, every guide and
every API page is in it, the API reference is rendered from the docstrings without importing the library, the home
page is the README with its links pointing at the site's pages, and no page loads anything from another host.

One build (about 5 s on 2 cores) serves every test of the module.
"""

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
# Markdown files outside docs/ that the site publishes too (mkdocs_hooks.EXTRA_PAGES) and their pages.
EXTRA_PAGES = {"launch/README.md": "launch/index.html"}
# One symbol per API page, by the anchor mkdocstrings gives it.
API_SYMBOLS = {
    "reference/predict.html": ["clipbert_emo.predict.Predictor", "clipbert_emo.predict.predict"],
    "reference/config.html": ["clipbert_emo.config.schema.ExperimentConfig",
                              "clipbert_emo.config.schema.resolve_n_test", "clipbert_emo.config.loading.load_config"],
    "reference/sampling.html": ["clipbert_emo.data.sampling.sample_clip_indices"],
    "reference/models.html": ["clipbert_emo.models.scorer.ClipScorer", "clipbert_emo.models.registry.register_fusion",
                              "clipbert_emo.models.aggregation.aggregate_clip_logits"],
    "reference/tasks.html": ["clipbert_emo.tasks.register_task", "clipbert_emo.tasks.base.Task"],
    "reference/training.html": ["clipbert_emo.train.engine.Engine", "clipbert_emo.train.observers.RunObserver"],
    "reference/checkpoint.html": ["clipbert_emo.checkpoint.save_checkpoint", "clipbert_emo.checkpoint.load_checkpoint"],
    "reference/export.html": ["clipbert_emo.export.export_checkpoint"],
    "reference/serve.html": ["clipbert_emo.serve.app.create_app", "clipbert_emo.serve.limits.ServeLimits"],
}

# Runs `mkdocs build` in this process, then lists the heavy or library modules the build imported.
BUILD = """
import json, sys
from mkdocs.__main__ import cli
try:
    cli(["build", "--strict", "--site-dir", sys.argv[1]])
    code = 0
except SystemExit as e:
    code = e.code
with open(sys.argv[2], "w") as f:
    json.dump({"code": code, "imported": sorted(m for m in sys.modules
                                                if m.split(".")[0] in ("clipbert_emo", "torch", "torchvision"))}, f)
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("docs_site")
    out, report = tmp / "site", tmp / "build.json"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    start = time.monotonic()
    run = subprocess.run([sys.executable, "-c", BUILD, str(out), str(report)], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=600)
    seconds = time.monotonic() - start
    print(f"mkdocs build --strict: {seconds:.1f} s")
    return {"out": out, "log": run.stdout + run.stderr, "returncode": run.returncode,
            "report": json.loads(report.read_text()) if report.exists() else None}


def page_of(md: str) -> str:
    return md[:-len(".md")] + ".html"


def docs_pages() -> list[str]:
    return sorted(p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md"))


def nav_files(entry) -> list[str]:
    if isinstance(entry, str):
        return [entry]
    if isinstance(entry, list):
        return [f for item in entry for f in nav_files(item)]
    if isinstance(entry, dict):
        return [f for value in entry.values() for f in nav_files(value)]
    return []


def test_builds_strict_offline_without_warnings(site):
    assert site["returncode"] == 0 and site["report"] and site["report"]["code"] == 0, site["log"][-4000:]
    assert "WARNING" not in site["log"] and "ERROR" not in site["log"], site["log"][-4000:]


def test_reference_is_read_from_the_source_not_imported(site):
    # mkdocstrings reads the docstrings statically (allow_inspection: false): no torch, no clipbert_emo import,
    # so the build needs no GPU, no network and none of the library's heavy dependencies.
    assert site["report"]["imported"] == [], site["report"]["imported"]


def test_nav_lists_every_page():
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    listed = nav_files(config["nav"])
    assert len(listed) == len(set(listed)), "a page is listed twice in mkdocs.yml's nav"
    assert sorted(listed) == sorted(docs_pages() + list(EXTRA_PAGES)), (
        "mkdocs.yml's nav and docs/ differ: add the new page to nav (a group: Getting started, Training, "
        "Evaluation, Serving, Performance, Architecture, Reference)")
    top = [next(iter(group)) for group in config["nav"]]
    assert top == ["Getting started", "Training", "Evaluation", "Serving", "Performance", "Architecture", "Reference"]


def test_every_page_is_built(site):
    expected = [page_of(md) for md in docs_pages()] + list(EXTRA_PAGES.values())
    assert "index.html" in expected and set(API_SYMBOLS) <= set(expected)
    missing = [p for p in expected if not (site["out"] / p).is_file()]
    assert not missing, missing
    for png in DOCS.rglob("*.png"):  # the screenshots the pages show
        assert (site["out"] / png.relative_to(DOCS)).is_file(), png


def test_api_reference_renders_the_symbols(site):
    for page, symbols in API_SYMBOLS.items():
        text = (site["out"] / page).read_text()
        for symbol in symbols:
            assert f'id="{symbol}"' in text, (page, symbol)
        # Sphinx roles in docstrings are turned into code (and links where the reference has the name)
        assert not re.search(r":(class|func|meth|mod|data|attr|exc):<code>", text), page
    config = (site["out"] / "reference/config.html").read_text()
    assert "resolve_n_test" in config and "data.n_test" in config
    models = (site["out"] / "reference/models.html").read_text()
    assert 'href="#clipbert_emo.models.scorer.ClipScorer"' in models  # a docstring's :class:`~...ClipScorer` link


def test_home_is_the_readme_with_site_links(site):
    home = (site["out"] / "index.html").read_text()
    readme = (ROOT / "README.md").read_text()
    title = readme.splitlines()[0].lstrip("# ").strip()
    assert f">{title}<" in home
    assert 'href="serving.html"' in home and 'src="serve.png"' in home and 'href="launch/index.html"' in home
    assert 'href="docs/' not in home and 'src="docs/' not in home
    scaling = (site["out"] / "scaling.html").read_text()
    assert 'href="launch/index.html"' in scaling
    assert 'href="../scaling.html"' in (site["out"] / "launch/index.html").read_text()


REMOTE = re.compile(r"""<(?!a\b)(\w+)\b[^>]*?\b(?:src|href|srcset|data|poster)\s*=\s*["']?\s*(?:https?:)?//""",
                    re.IGNORECASE)


def test_no_page_loads_anything_from_another_host(site):
    # Ordinary links (<a href>) may point anywhere; nothing that a browser loads by itself may (scripts, styles,
    # fonts, images, frames). Material's bundle loads mermaid from a CDN only for a mermaid diagram: there is none.
    pages = list(site["out"].rglob("*.html"))
    assert pages
    for page in pages:
        text = page.read_text()
        found = REMOTE.search(text)
        assert not found, (page, text[found.start():found.start() + 200])
        assert "fonts.googleapis" not in text and "fonts.gstatic" not in text, page
        assert 'class="mermaid"' not in text, page
    for css in site["out"].rglob("*.css"):
        assert not re.search(r"""(url\(|@import)\s*["']?\s*(https?:)?//""", css.read_text()), css


def test_links_are_rewritten_for_the_site():
    sys.path.insert(0, str(ROOT))
    try:
        from mkdocs_hooks import rewrite_links
    finally:
        sys.path.remove(str(ROOT))
    text = ("See [a](docs/serving.md#the-api), ![b](docs/img/page_live.png), [c](launch/README.md), "
            "[d](https://example.org/x.md), [e](#top), [f](setup.py).\n"
            "```\n[g](docs/serving.md)\n```\n")
    assert rewrite_links(text, "README.md", "index.md") == (
        "See [a](serving.md#the-api), ![b](img/page_live.png), [c](launch/README.md), "
        "[d](https://example.org/x.md), [e](#top), [f](setup.py).\n"
        "```\n[g](docs/serving.md)\n```\n")
    assert rewrite_links("[l](../launch/README.md)", "docs/scaling.md", "scaling.md") == "[l](launch/README.md)"
    assert rewrite_links("[s](../docs/scaling.md)", "launch/README.md", "launch/README.md") == "[s](../scaling.md)"
    assert rewrite_links("[r](../serving.md)", "docs/reference/predict.md", "reference/predict.md") == \
        "[r](../serving.md)"

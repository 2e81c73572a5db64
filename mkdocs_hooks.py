"""MkDocs hooks for the documentation site (``hooks:`` in mkdocs.yml; ``make docs`` builds it into site/).

The repository's markdown files are written to be read where they lie (on GitHub, in an editor); these hooks make
the same files work as one site, with no second copy of any of them:

- ``docs/index.md`` includes ``README.md`` (a line ``--8<-- "README.md"``): the repository's front page is the
  site's home;
- a link is written relative to where its file lies in the repository (README.md links ``docs/serving.md``,
  docs/scaling.md links ``../launch/README.md``); each link to a file the site publishes is rewritten to that
  file's place in the site, and any other is left as it is (``mkdocs build --strict`` then fails on it);
- the repository's markdown files outside docs/ that pages link to (``EXTRA_PAGES``) are published at the same path;
- the API reference's docstrings use Sphinx roles (``:class:`~clipbert_emo.models.scorer.ClipScorer```): the role
  is dropped, ``~`` keeps the last name, and a full ``clipbert_emo.`` name links to its entry where the reference
  has one.

Nothing here reads the network.
"""

from __future__ import annotations

import html
import posixpath
import re
from pathlib import Path

from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parent
DOCS_DIR = "docs"
# Markdown files outside docs/ that the site publishes, at the same path as in the repository.
EXTRA_PAGES = ("launch/README.md",)

INCLUDE_RE = re.compile(r'^--8<--\s+"([^"]+)"\s*$', re.MULTILINE)
# ](target) or ](target "title"), the tail of a markdown link or image.
LINK_RE = re.compile(r'(\]\()(<?)([^)\s>]+)(>?)((?:\s+"[^"]*")?\))')
FENCE_RE = re.compile(r"^\s*(```|~~~)")
SCHEME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
ROLE_RE = re.compile(r":(?:class|func|meth|mod|attr|data|exc|obj):<code>(~?)\.?([\w.]+)</code>")


def site_path(repo_path: str) -> str | None:
    """Where the repository file ``repo_path`` lies in the site (relative to docs_dir), or None if it is not there."""
    if repo_path.startswith(DOCS_DIR + "/"):
        return repo_path[len(DOCS_DIR) + 1:]
    if repo_path in EXTRA_PAGES:
        return repo_path
    return None


def rewrite_links(text: str, text_repo_path: str, page_site_path: str) -> str:
    """Rewrite the relative links of ``text`` (markdown that lies at ``text_repo_path`` in the repository) for a page
    at ``page_site_path`` in the site. Fenced code blocks are left alone."""
    here = posixpath.dirname(text_repo_path)
    page_dir = posixpath.dirname(page_site_path) or "."

    def one(m: re.Match) -> str:
        target = m.group(3)
        if target.startswith(("#", "/")) or SCHEME_RE.match(target):
            return m.group(0)
        path, sep, fragment = target.partition("#")
        resolved = posixpath.normpath(posixpath.join(here, path))
        where = site_path(resolved)
        if where is None:
            return m.group(0)
        new = posixpath.relpath(where, page_dir) + sep + fragment
        return m.group(1) + m.group(2) + new + m.group(4) + m.group(5)

    out, fenced = [], None
    for line in text.splitlines(keepends=True):
        fence = FENCE_RE.match(line)
        if fenced is None and fence:
            fenced = fence.group(1)
        elif fenced is not None and fence and fence.group(1) == fenced:
            fenced = None
        elif fenced is None:
            line = LINK_RE.sub(one, line)
        out.append(line)
    return "".join(out)


def repo_path_of(file: File) -> str:
    """The page's path in the repository (docs pages and the published EXTRA_PAGES alike)."""
    return Path(file.abs_src_path).resolve().relative_to(ROOT).as_posix()


def on_files(files, config):
    for rel in EXTRA_PAGES:
        if files.get_file_from_path(rel) is None:
            files.append(File.generated(config, rel, abs_src_path=str(ROOT / rel)))
    return files


def on_page_markdown(markdown, page, config, files):
    page_site = page.file.src_uri

    def include(m: re.Match) -> str:
        name = m.group(1)
        text = (ROOT / name).read_text(encoding="utf-8")
        return rewrite_links(text, name, page_site)

    # The page's own links first (an included file's are already rewritten), then the includes.
    own = rewrite_links(markdown, repo_path_of(page.file), page_site)
    return INCLUDE_RE.sub(include, own)


def on_page_content(content, page, config, files):
    def role(m: re.Match) -> str:
        name = m.group(2)
        shown = html.escape(name.rsplit(".", 1)[-1] if m.group(1) else name)
        if name.startswith("clipbert_emo."):
            return f'<autoref identifier="{html.escape(name)}" optional><code>{shown}</code></autoref>'
        return f"<code>{shown}</code>"

    return ROLE_RE.sub(role, content)

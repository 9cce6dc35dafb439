"""The README and docs/ stay true: short README, every page linked, every path, test and link real.

The README's "Change the model" recipe names files and the code to change in each: a rename or
a move fails here, naming the page to fix.
"""

import glob
import os
import re

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
README = os.path.join(REPO, "README.md")
DOCS = os.path.join(REPO, "docs")
PAGES = [README] + sorted(glob.glob(os.path.join(DOCS, "*.md")))
README_MAX_LINES = 200

# What a repository path in a page starts with: the layout's folders and the top-level files.
ROOT_FOLDERS = ("app", "pipeline", "components", "movielens", "baselines", "retrieval", "trainer", "transform", "core", "bench",
                "tests", "docs", ".ci")
ROOT_FILES = ("Makefile", "Dockerfile", "pyproject.toml", "requirements.lock", "requirements-tfx121.lock", ".python-version", "README.md")
_PATH = re.compile(r"(?:^|(?<=[\s(]))((?:" + "|".join(re.escape(f) for f in ROOT_FOLDERS) + r")/[\w./-]*"
                   r"|(?:" + "|".join(re.escape(f) for f in ROOT_FILES) + r")(?![\w.-]))(::\w+)?")
_FENCE = re.compile(r"^```.*?^```", re.S | re.M)
_CODE = re.compile(r"`([^`\n]+)`")
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
_TEMPLATE = set("<>{}*$")


def _name(page: str) -> str:
    return os.path.relpath(page, REPO)


def _read(page: str) -> str:
    with open(page, encoding="utf-8") as f:
        return f.read()


def _code_texts(text: str):
    """Inline code spans and the lines of fenced blocks: where a page writes paths."""
    for block in _FENCE.findall(text):
        yield from block.splitlines()[1:-1]
    yield from _CODE.findall(_FENCE.sub("", text))


def repository_paths(text: str):
    """(path, test name or None) of every repository path the page writes in code (templates like <version> skipped)."""
    for code in _code_texts(text):
        if _TEMPLATE & set(code):
            continue
        for match in _PATH.finditer(code):
            yield match.group(1), (match.group(2) or "")[2:] or None


def _test_names() -> set:
    names = set()
    for path in glob.glob(os.path.join(REPO, "tests", "**", "*.py"), recursive=True):
        names.update(re.findall(r"^\s*def (test_\w+)", _read(path), re.M))
    return names


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: markup and punctuation dropped, lower case, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = re.sub(r"[^\w\- ]", "", text.replace("`", "").strip().lower())
    return text.replace(" ", "-")


def anchors(page: str) -> set:
    text = _FENCE.sub("", _read(page))
    found = {slug(h) for h in re.findall(r"^#{1,6}\s+(.+?)\s*$", text, re.M)}
    return found | set(re.findall(r'<a id="([^"]+)"', text))


def links(page: str):
    """(target file, anchor or None) of every relative link of the page."""
    for target in _LINK.findall(_FENCE.sub("", _read(page))):
        if re.match(r"^[a-z]+:", target):  # https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        resolved = os.path.normpath(os.path.join(os.path.dirname(page), path)) if path else page
        yield target, resolved, anchor or None


def test_the_readme_is_short():
    lines = _read(README).count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines (at most {README_MAX_LINES}): move the detail to docs/"


@pytest.mark.parametrize("page", PAGES, ids=_name)
def test_every_repository_path_a_page_names_exists(page):
    missing = []
    for path, test in repository_paths(_read(page)):
        full = os.path.join(REPO, path)
        if not os.path.exists(full):
            missing.append(path)
        elif test and not re.search(rf"^\s*def {test}\b", _read(full), re.M):
            missing.append(f"{path}::{test}")
    assert not missing, f"{_name(page)} names paths that do not exist: {sorted(set(missing))}"


@pytest.mark.parametrize("page", PAGES, ids=_name)
def test_every_test_a_page_names_exists(page):
    named = {code for code in _CODE.findall(_FENCE.sub("", _read(page))) if re.fullmatch(r"test_\w+", code)}
    missing = named - _test_names()
    assert not missing, f"{_name(page)} names tests that do not exist: {sorted(missing)}"


@pytest.mark.parametrize("page", PAGES, ids=_name)
def test_every_link_leads_somewhere(page):
    broken = []
    for target, resolved, anchor in links(page):
        if not os.path.exists(resolved):
            broken.append(target)
        elif anchor and resolved.endswith(".md") and anchor not in anchors(resolved):
            broken.append(target)
    assert not broken, f"{_name(page)} has broken links: {broken}"


def test_every_docs_page_is_linked_from_the_readme():
    linked = {resolved for _, resolved, _ in links(README)}
    pages = set(glob.glob(os.path.join(DOCS, "*.md")))
    assert pages, "docs/ has no pages"
    assert not pages - linked, f"docs pages the README does not link: {sorted(map(_name, pages - linked))}"


@pytest.mark.parametrize("page", sorted(glob.glob(os.path.join(DOCS, "*.md"))), ids=_name)
def test_every_docs_page_begins_with_what_it_is_for(page):
    lines = [line for line in _read(page).splitlines() if line.strip()]
    assert lines[0].startswith("# "), f"{_name(page)} does not begin with a title"
    assert re.match(r"[A-Za-z]", lines[1]), f"{_name(page)}: after the title, one or two sentences on what it is for"


def recipe_steps() -> list:
    """The README's "Change the model" steps: (the files the step names, the code names it writes)."""
    section = re.search(r"^## Change the model\n(.*?)(?=^## )", _read(README), re.S | re.M)
    assert section, "README.md has no '## Change the model' section"
    steps = re.findall(r"^\d+\. (.*?)(?=^\d+\. |^\S|\Z)", section.group(1), re.S | re.M)
    assert steps, "the recipe has no numbered steps"
    out = []
    for step in steps:
        codes = _CODE.findall(step)
        files = [path for path, _ in repository_paths(step) if path.endswith(".py")]
        names = [code for code in codes if re.fullmatch(r"[A-Za-z_]\w*", code) and not code.startswith("test_")]
        out.append((files, names))
    return out


def test_the_recipe_names_code_that_is_in_the_files_it_names():
    """Each code name a step writes (`VOCABULARY_TABLES`, `preprocessing_fn`) is in one of the files that step names."""
    wrong = []
    for files, names in recipe_steps():
        texts = [_read(os.path.join(REPO, f)) for f in files if os.path.exists(os.path.join(REPO, f))]
        for name in names:
            if not any(re.search(rf"\b{re.escape(name)}\b", text) for text in texts):
                wrong.append(f"{name} (not in {', '.join(files) or 'any file the step names'})")
    assert not wrong, f"README.md's recipe names code its files do not have: {wrong}"

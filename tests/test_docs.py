"""The documentation: README shape and order, links that resolve, flags that exist and are documented, and the
generated parts (the README's results block, docs/flags.md) equal to what publish_docs.py makes now. Fast: no model."""
import argparse
import json
import re
from pathlib import Path

import pytest

import publish_docs
from publish_docs import RESULTS_END, RESULTS_START, heading_anchor

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
MAX_README_LINES = 300  # short: the README points to docs/ for the rest
# The README's sections in order (set-up first, then the seed's commands, results, flags, the topics, layout, extending).
README_ORDER = ["The seed's commands", "Results at a glance", "Flags", "Tasks", "Evaluation", "Supervised fine-tuning",
                "Comparing methods", "GPU and multi-GPU", "Layout", "Adding a task, a reward or a method"]
LINK_RE = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FLAG_RE = re.compile(r"(?<![\w-])--[A-Za-z][\w-]*")
REGENERATE = "run `python publish_docs.py` and commit the result"
# Insider talk, which a user of the docs cannot follow: this project's issue numbers ("issue 10", "issues 10 and 25",
# "#25", a heading anchor "#issue-25-..."), who wrote what when ("session 13", "the brief", "the filer's call", "the issue's
# rule"), and absolute paths of a developer's machine. ONNX Runtime's object is written `InferenceSession`, so the word
# "session" is free to mean only the other thing. "the issue" counts only as a subject or owner ("the issue's", "the
# issue asks"), not in "the issue is that ...". "#### 72" (GSM8K's answer line) and "&#8212;" are not issue references.
INSIDER_RE = re.compile(
    r"\bissues?[\s-]+#?\d+"
    r"|(?<![\w#&/])#\d+\b"
    r"|\bsessions?\b|\bthe brief\b|\bthe filer\b"
    r"|\bthe issue(?:'s|\s+(?:asks|asked|says|said|wants|wanted|allows|allowed|rules|requires|required))\b",
    re.I)
# Absolute paths under the roots where a developer's checkouts, homes and scratch files live; not system paths
# (/dev/null, /proc, /usr) and not a URL's path (https://host/home/...) or a relative one (runs/tmp/x).
ABS_PATH_RE = re.compile(r"(?<![\w.~/:-])/(?:work|root|home|tmp|Users|mnt|scratch|data|opt|var)/[^\s`'\")\]]*")
# The code's own absolute path literals: a doc that names where the code writes (a lock file, a staging folder) is
# documenting it. Tests are not the code (this file names machine paths in its own check).
CODE_PATH_RE = re.compile(r"[\"'](/(?:work|root|home|tmp|Users|mnt|scratch|data|opt|var)/[^\"'\s]+)")
CODE_DIRS_SKIPPED = {"tests", "docs", "models", "output", "runs"}


def _prose(text: str) -> str:
    """Markdown without fenced code blocks and inline code spans (a `[x](y)` there is not a link)."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    return re.sub(r"`[^`\n]*`", "", text)


def _anchors(path: Path) -> set[str]:
    """Every heading anchor of a markdown file, with GitHub's -1, -2 suffixes for repeats."""
    seen, anchors = {}, set()
    text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.S | re.M)
    for line in text.splitlines():
        m = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            slug = heading_anchor(m.group(1))
            anchors.add(slug if slug not in seen else f"{slug}-{seen[slug]}")
            seen[slug] = seen.get(slug, 0) + 1
    return anchors


def _broken_links(path: Path, root: Path = ROOT) -> list[str]:
    broken = []
    for target in LINK_RE.findall(_prose(path.read_text())):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        where = f"{path.relative_to(root)}: ({target})"
        if not dest.exists():
            broken.append(f"{where} -> {dest.relative_to(root) if dest.is_relative_to(root) else dest} does not exist")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            broken.append(f"{where} -> no heading #{anchor} in {dest.relative_to(root)}")
    return broken


def _section(text: str, title: str) -> str:
    """The body of the `## title` section, up to the next `## ` heading."""
    m = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, flags=re.S | re.M)
    assert m, f"README has no '## {title}' section"
    return m.group(1)


def _table_flags(section: str) -> set[str]:
    """The --flags named in the first column of every table row of a section."""
    flags = set()
    for line in section.splitlines():
        if line.startswith("| `"):
            flags |= set(FLAG_RE.findall(line.split("|")[1]))
    return flags


def _code_paths(root: Path = ROOT) -> set[str]:
    files = [p for p in root.glob("*.py")] + [root / "Makefile"]
    for sub in root.iterdir():
        if sub.is_dir() and not sub.name.startswith(".") and sub.name not in CODE_DIRS_SKIPPED:
            files += [p for p in sub.rglob("*") if p.suffix in (".py", ".sh")]
    return {m for f in files if f.is_file() for m in CODE_PATH_RE.findall(f.read_text(errors="replace"))}


def _insider_talk(path: Path, code_paths: set[str], root: Path = ROOT) -> list[str]:
    """Every line of a markdown file that speaks of the tracker or its sessions, or names a machine path."""
    hits = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        found = [m.group(0) for m in INSIDER_RE.finditer(line)]
        found += [m.group(0) for m in ABS_PATH_RE.finditer(line)
                  if not any(m.group(0).rstrip(".,;:").startswith(c) for c in code_paths)]
        hits += [f"{path.relative_to(root)}:{number}: {f!r}" for f in found]
    return hits


@pytest.fixture(scope="module")
def parsers() -> dict[str, argparse.ArgumentParser]:
    return publish_docs.all_parsers()


def test_readme_is_short_and_in_order():
    text = README.read_text()
    assert len(text.splitlines()) <= MAX_README_LINES, f"README.md has {len(text.splitlines())} lines, more than {MAX_README_LINES}"
    headings = re.findall(r"^## (.+)$", _prose(text), flags=re.M)
    positions = []
    for title in README_ORDER:
        found = [i for i, h in enumerate(headings) if h.startswith(title)]
        assert found, f"README.md has no '## {title}...' section; its sections: {headings}"
        positions.append(found[0])
    assert positions == sorted(positions), f"README.md sections out of order ({README_ORDER}): {headings}"
    set_up = text.split("\n## ")[0]  # the text before the first section: what it is, the finding, the commands and their cost
    assert "make demo" in set_up and "make test" in set_up
    costs = {m.group(1): m.group(2) for m in re.finditer(r"^\| `(make \w+)` \|.*\| ([^|]*) \|$", set_up, flags=re.M)}
    assert {"make demo", "make test", "make compare"} <= set(costs), f"the set-up's cost table lists {sorted(costs)}"
    for command, cost in costs.items():
        assert re.search(r"\d (s|min|h)\b", cost), f"{command}: no time in {cost!r}"
        assert re.search(r"\d GB|not measured", cost), f"{command}: no peak memory in {cost!r}"


def test_readme_names_the_rows_before_its_table_uses_them():
    """A reader meets the seed's GPU command and every row name (r1, memoryr+, each -variant) before the results table."""
    text = README.read_text()
    before = text.split(RESULTS_START)[0]
    assert "python run_gsm8k.py --model_name=Qwen/Qwen2.5-0.5B-Instruct" in before, "the seed's command comes after the results"
    methods = json.loads((ROOT / "docs" / "results.json").read_text())["settings"]["methods"]
    names = {part for method in methods for part in (method.split("-", 1)[0], "-" + method.split("-", 1)[1] if "-" in method else None) if part}
    undefined = sorted(name for name in names if f"`{name}`" not in before)
    assert not undefined, f"README.md's results table uses rows it has not named yet: {undefined}"


@pytest.mark.parametrize("path", [README] + DOCS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_resolves(path):
    broken = _broken_links(path)
    assert not broken, "broken links:\n" + "\n".join(broken)


@pytest.mark.parametrize("path", [README] + DOCS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_docs_speak_to_users(path):
    """No issue numbers, session history or machine paths: name each thing by what it is (the cpu experiment, the
    ablation). docs/records/ holds data, not prose, and is not read."""
    hits = _insider_talk(path, _code_paths())
    assert not hits, f"{len(hits)} insider references (say what the thing is instead):\n" + "\n".join(hits)


def test_insider_check_flags_the_talk_and_spares_the_look_alikes(tmp_path):
    (tmp_path / "tool.py").write_text('LOCK = "/tmp/tool.lock"\n')
    page = tmp_path / "page.md"
    flagged = ["issue 10", "Issues 10 and 25", "issue #25", "see #25.", "(results.md#issue-25-what-drives)",
               "session 13", "in a later session", "the brief", "the filer's call", "by the issue's rule",
               "the issue asks for 2 hours", "/work/wt-harden/.venv/bin/python", "/root/.cache/x", "/tmp/Memory-R"]
    spared = ["`#### 72` ends a GSM8K answer", "a dash &#8212; here", "[r](results.md#3-steps)", "an InferenceSession per thread",
              "https://github.com/home/x", "runs/tmp/x and ~/home/x", "/dev/null and /proc/self/status",
              "the lock `/tmp/tool.lock`", "the issue is that lighteval reads the first number", "a brief note", "tissue 3"]
    page.write_text("\n".join(flagged + spared) + "\n")
    hits = _insider_talk(page, _code_paths(tmp_path), root=tmp_path)
    assert [int(h.split(":")[1]) for h in hits] == list(range(1, len(flagged) + 1)), "\n".join(hits)


def test_link_check_catches_a_missing_file_and_a_missing_heading(tmp_path):
    (tmp_path / "a.md").write_text("# Title\n\n## A section\n\n## A section\n\ntext\n")
    page = tmp_path / "b.md"
    page.write_text("[ok](a.md#a-section) [ok](a.md#a-section-1) [code `x`](a.md) `[not a link](nowhere.md)`\n"
                    "[gone](missing.md) [no heading](a.md#nothing) [web](https://example.com/x.md)\n")
    broken = _broken_links(page, root=tmp_path)
    assert len(broken) == 2 and "missing.md does not exist" in broken[0] and "no heading #nothing" in broken[1]


def test_readme_shows_the_headline_figure_and_it_exists():
    results = json.loads((ROOT / "docs" / "results.json").read_text())
    figures = [t["figure"] for t in results["experiment"]["tasks"].values() if t.get("figure")]
    images = re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", README.read_text())
    assert figures and images
    for figure in figures:
        assert f"docs/{figure}" in images, f"README.md does not show the headline figure docs/{figure}"
    for image in images:
        assert (ROOT / image).is_file(), f"README.md shows {image}, which is not in the repository"


def test_results_block_is_current():
    results = json.loads((ROOT / "docs" / "results.json").read_text())
    text = README.read_text()
    assert text.count(RESULTS_START) == 1 and text.count(RESULTS_END) == 1
    block = text.split(RESULTS_START)[1].split(RESULTS_END)[0].strip()
    assert block == publish_docs.results_block(results).strip(), f"README.md's results block is stale: {REGENERATE}"


def test_flags_doc_is_generated_from_the_parsers(parsers):
    assert publish_docs.FLAGS_DOC.read_text() == publish_docs.flags_markdown(parsers), \
        f"docs/flags.md differs from the scripts' parsers: {REGENERATE}"


def test_every_flag_of_every_parser_is_documented(parsers):
    documented = set(FLAG_RE.findall(README.read_text() + publish_docs.FLAGS_DOC.read_text()))
    missing = [f"{script}: {flag}" for script, parser in parsers.items()
               for flag in publish_docs.flag_names(parser) if flag.startswith("--") and flag not in documented]
    assert not missing, "flags in no README or docs/flags.md:\n" + "\n".join(missing)


def test_hand_written_flag_tables_name_real_flags(parsers):
    """The README's common-flags table and docs/method.md's tables are written by hand: each flag they name must exist."""
    real = set(publish_docs.flag_names(parsers["run_gsm8k.py"]))
    for path, section in ((README, "Flags"), (ROOT / "docs" / "method.md", "The method's flags (`run_gsm8k.py`)"),
                          (ROOT / "docs" / "method.md", "Deviations from the original code, and the flags that reproduce it")):
        named = _table_flags(_section(path.read_text(), section))
        assert named, f"no flag table in {path.name}, section {section!r}"
        assert named <= real, f"{path.name} ({section}) names flags run_gsm8k.py does not have: {sorted(named - real)}"


def test_script_parser_catches_parsers_of_scripts_without_build_parser(parsers):
    assert "--max_samples" in publish_docs.flag_names(parsers["run_eval.py"])  # parse_args(argv)
    assert "--cache" in publish_docs.flag_names(parsers["prepare_model.py"])  # main() that reads sys.argv
    assert "run_dirs" in publish_docs.flag_names(parsers["plot_stats.py"])  # a positional
    assert publish_docs.flag_names(parsers["run_gsm8k.py"]) == publish_docs.flag_names(__import__("run_gsm8k").build_parser())
    assert argparse.ArgumentParser.parse_args.__name__ == "parse_args"  # restored after catching


def _results(significance: dict, visible: bool) -> dict:
    cell = {"mean": 0.4, "std": 0.02, "n": 3, "lo": 0.35, "hi": 0.45}
    labels = ["r1", "up", "down", "level", "untested"]
    return {"settings": {"model_name": "/x/models/M", "seeds": [0, 1, 2], "init": "base", "max_steps": 8},
            "methods": {label: {} for label in labels},
            "experiment": {"completions_per_step": 16, "tasks": {"t": {
                "figure": "figures/experiment_t.png", "table": {label: {"last": cell, "best": cell} for label in labels},
                "significance": significance,
                "learning_visible": {"start": 0.30, "last_mean": 0.40, "margin": 0.10, "seeds": 3, "bar": 0.06, "visible": visible}}}}}


def test_results_block_reads_the_intervals():
    boot = lambda d, lo, hi: {"difference": d, "lo": lo, "hi": hi, "p": 0.01}  # noqa: E731
    sig = {"up": boot(0.05, 0.01, 0.09), "down": boot(-0.05, -0.09, -0.01), "level": boot(0.01, -0.02, 0.04)}
    block = publish_docs.results_block(_results(sig, visible=True))
    assert "![t accuracy vs completions seen](docs/figures/experiment_t.png)" in block
    assert "| up | 3 | 40.0 ± 2.0 | [35.0, 45.0] | +5.0 | [+1.0, +9.0] | 0.01 |" in block
    assert "| untested | 3 | 40.0 ± 2.0 | [35.0, 45.0] | not tested |" in block
    assert "r1 ended +10.0 points from its start of 30.0% (3 seeds), clearing the 6.0-point bar" in block
    assert "up (+5.0) ended above r1; down (-5.0) ended below r1; level (+1.0) cannot be told apart from r1." in block
    assert "r1, up, down, level, untested × seeds 0, 1, 2 from M, 8 steps of 16 completions a step" in block
    sig["down2"] = sig["down3"] = sig["down"]
    assert "down (-5.0), down2 (-5.0) and down3 (-5.0) ended below r1" in publish_docs.results_block(_results(sig, visible=True))
    assert "short of the 6.0-point bar" in publish_docs.results_block(_results(sig, visible=False))


def test_replace_block_keeps_the_text_around_it():
    text = f"head\n{RESULTS_START}\nold\n{RESULTS_END}\ntail\n"
    assert publish_docs.replace_block(text, "new\n") == f"head\n{RESULTS_START}\nnew\n{RESULTS_END}\ntail\n"
    with pytest.raises(ValueError, match="expected one line"):
        publish_docs.replace_block("no markers here", "new")


def test_check_reports_a_stale_file_and_the_rewrite_fixes_it(tmp_path, monkeypatch, capsys):
    readme, flags = tmp_path / "README.md", tmp_path / "flags.md"
    readme.write_text(f"# x\n{RESULTS_START}\nstale\n{RESULTS_END}\n")
    flags.write_text(publish_docs.FLAGS_DOC.read_text())
    monkeypatch.setattr(publish_docs, "README", readme)
    monkeypatch.setattr(publish_docs, "FLAGS_DOC", flags)
    monkeypatch.setattr(publish_docs, "RESULTS_JSON", ROOT / "docs" / "results.json")
    assert publish_docs.main(["--check"]) == 1 and "stale" in readme.read_text()
    assert "README.md is out of date" in capsys.readouterr().err
    assert publish_docs.main([]) == 0 and "stale" not in readme.read_text()
    assert publish_docs.main(["--check"]) == 0

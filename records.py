"""Portable records: every path a record or a published JSON keeps is relative to the repository root.

A comparison's records (`run_compare.py --records`, e.g. docs/records/compare-cpu), the published results
(docs/results.json) and the mechanism check (docs/mechanism_chain_sum.json) are committed, so a clone anywhere must
read them the same. Absolute paths would tie them to one machine's layout: the settings-unchanged check compared
them literally, so a clone at another path could not rebuild the report. Here:

- `portable(obj)`: a JSON value with every absolute path made relative to the repository root (`../shared/data`
  for a folder beside it), and the paths inside a `command` string too; Hub ids, relative paths and other text
  are left as they are. Applying it twice changes nothing.
- `same_setting(saved, now)`: the settings check's comparison of two values in that normal form. A path saved by an
  older checkout at another location (absolute, ending in the relative path now given) counts as the same.
- `migrate(paths)`: rewrite JSON files (and every JSON file under a folder) in place in that form, once; files
  with nothing to change are not touched.

    python records.py docs/records/compare-cpu docs/results.json docs/mechanism_chain_sum.json   # rewrite
    python records.py --check docs/records/compare-cpu                                           # exit 1 if any would change
"""
import argparse
import json
import os
import shlex
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
COMMAND_KEYS = ("command",)  # keys whose string value is a shell command line (compare_done.json)
MIGRATED = ("docs/records", "docs/results.json", "docs/mechanism_chain_sum.json")  # what the committed tree keeps


def is_abs_path(value) -> bool:
    """An absolute POSIX path on its own: no whitespace, no newline (a sentence that mentions one is left alone)."""
    return isinstance(value, str) and value.startswith("/") and not any(c.isspace() for c in value)


def portable_path(value: str, root: Path = ROOT) -> str:
    """`value` relative to `root` when it is an absolute path; anything else unchanged."""
    return os.path.relpath(value, root) if is_abs_path(value) else value


def portable_command(command: str, root: Path = ROOT) -> str:
    """A command line with each absolute-path word (or `--flag=/path` value) made relative to `root`."""
    try:
        words = shlex.split(command)
    except ValueError:  # not a shell line after all
        return command
    out = []
    for w in words:
        flag, eq, value = w.partition("=")
        out.append(f"{flag}={portable_path(value, root)}" if eq and flag.startswith("-") else portable_path(w, root))
    return shlex.join(out) if out != words else command


def portable(obj, root: Path = ROOT, key: str | None = None):
    """`obj` (a JSON value) with every absolute path relative to `root`; see the module docstring."""
    if isinstance(obj, dict):
        return {k: portable(v, root, k) for k, v in obj.items()}
    if isinstance(obj, list):
        return [portable(v, root) for v in obj]
    if isinstance(obj, str):
        return portable_command(obj, root) if key in COMMAND_KEYS else portable_path(obj, root)
    return obj


def same_setting(saved, now, root: Path = ROOT) -> bool:
    """Do a saved setting and the current one name the same thing, once both are in the portable form?"""
    saved, now = portable(saved, root), portable(now, root)
    if saved == now:
        return True
    # an older record's absolute path from a checkout elsewhere: /old/place/models/X and models/X are the same model
    return (isinstance(saved, str) and isinstance(now, str) and not now.startswith("..") and not os.path.isabs(now)
            and saved.startswith("..") and ("/" + saved).endswith("/" + now))


def dump_like(obj, original: str) -> str:
    """`obj` as JSON in the layout of `original` (indented by 2 or on one line, ASCII-escaped or not, final newline)."""
    indent = 2 if original.lstrip().startswith(("{\n", "[\n")) else None
    text = json.dumps(obj, indent=indent, ensure_ascii=original.isascii())
    return text + "\n" if original.endswith("\n") else text


def migrate_file(path: Path, root: Path = ROOT, write: bool = True) -> bool:
    """Rewrite one JSON file in the portable form; True if it changed (or would, with write=False)."""
    original = path.read_text(encoding="utf-8")
    try:
        obj = json.loads(original)
    except ValueError as e:
        raise ValueError(f"{path}: not JSON ({e})") from None
    new = portable(obj, root)
    if new == obj:
        return False
    if write:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(dump_like(new, original), encoding="utf-8")
        os.replace(tmp, path)
    return True


def migrate(paths, root: Path = ROOT, write: bool = True) -> list[Path]:
    """Every JSON file given, or under a folder given, in the portable form; the files changed (or that would be)."""
    files = []
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted(f for f in p.rglob("*.json") if f.is_file())
        elif p.is_file():
            files.append(p)
        else:
            raise FileNotFoundError(f"no such file or folder: {p}")
    return [f for f in files if migrate_file(f, root, write)]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("paths", nargs="*", default=[str(ROOT / m) for m in MIGRATED],
                   help=f"JSON files or folders of them (default: {', '.join(MIGRATED)})")
    p.add_argument("--check", action="store_true", help="change nothing; exit 1 if any file holds an absolute path")
    args = p.parse_args(argv)
    try:
        changed = migrate(args.paths, write=not args.check)
    except (FileNotFoundError, ValueError) as e:
        p.error(str(e))
    verb = "would change" if args.check else "rewrote"
    print(f"{verb} {len(changed)} files" + "".join(f"\n  {f}" for f in changed))
    return 1 if args.check and changed else 0


if __name__ == "__main__":
    sys.exit(main())

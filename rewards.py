"""Reward functions for GRPO on any registered task (GSM8K by default), and the one factory that assembles them.

The R1 set (xml-count, soft format, strict format, integer answer, correctness) scores format and
answer; the cosine length reward (Yeo et al. 2025) is an optional baseline; the episodic-memory
rewards of Memory-R / Memory-R+ live in `ir_knn_st.py` (response level) and `ir_knn_st2.py`
(sentence level) and are plugged in here, as are the exploration peers compared with them
(`exploration.py`: outcome-based exploration and in-group novelty; `surprise.py`: random network
distillation; the entropy bonus is trl's). `--intrinsic_mix` (`intrinsic_mix.py`) decides how the
intrinsic rewards (INTRINSIC_REWARDS) join the extrinsic ones.

Every reward has TRL's signature `f(prompts, completions, **kwargs) -> list[float]`: TRL passes
`completion_ids`, `trainer_state`, `log_metric` and each dataset column (`question`, `answer`) as
keyword arguments, and logs each function under its `__name__`. The R1 rewards are pure functions
of the completion text and the gold answer. No reward raises or returns NaN on odd input (empty,
no tags, huge, unicode, not even a string): such a completion just earns the low score.

Choices that differ from the original R1 scripts, each for a stated reason:
- soft/strict format regexes match across newlines (DOTALL). Without it a reasoning of more than
  one line can never match, which makes "format" mean "one-line reasoning".
- integer answer and correctness compare normalised numbers (`answers.py`): "1,000", "$18" and
  "18.0" are the integers they look like.
- cosine: length is measured in tokens against the token budget L, with progress clamped to
  [0, 1]. The original measured characters against L, so progress passed 1 and the cosine wrapped
  around; `--cosine_length_unit chars` reproduces that for comparison.

`make_reward_funcs(use_ir, ...)` is the only place a reward list is built: `run_gsm8k.py`, the
tests and the benchmarks all call it.
"""
import math
import re

from answers import completion_text, extract_xml_answer, normalize_number
from tasks import Task, get_task

# The R1 reward scales, as in the R1-style GSM8K recipes the paper builds on: format rewards are
# small (0.125 per tag, 0.5 per format check) so that correctness (2.0) dominates the total.
XML_TAG_REWARD = 0.125
XML_TRAILING_PENALTY_PER_CHAR = 0.001  # text after </answer> is discouraged, gently
FORMAT_REWARD = 0.5
INT_REWARD = 0.5
CORRECT_REWARD = 2.0  # --correct_reward's default (the original Memory-R code's correctness reward gave 1.0)

# Cosine length reward constants (Yeo et al. 2025, as used by open-r1 and the Memory-R seed):
# a correct answer earns 1.0 when short and 0.5 at the budget; a wrong one is punished most when
# short (-1.0) and least at the budget (-0.5), to encourage thinking longer when wrong.
COSINE_CORRECT = (0.5, 1.0)  # (value at full length, value at zero length)
COSINE_WRONG = (-0.5, -1.0)

SOFT_FORMAT_RE = re.compile(r"<reasoning>.*?</reasoning>\s*<answer>.*?</answer>", re.DOTALL)
STRICT_FORMAT_RE = re.compile(r"^<reasoning>\n.*?\n</reasoning>\n<answer>\n.*?\n</answer>\n?$", re.DOTALL)


# --- pure scores of one completion -------------------------------------------------------------

def xml_count_score(text: str) -> float:
    """0.125 for each of the four tags present exactly once, minus 0.001 per character after </answer>."""
    score = sum((XML_TAG_REWARD for tag in ("<reasoning>\n", "\n</reasoning>\n", "\n<answer>\n", "\n</answer>") if text.count(tag) == 1), 0.0)
    if text.count("\n</answer>") == 1:
        trailing = text.split("\n</answer>", 1)[1].strip()
        score -= XML_TRAILING_PENALTY_PER_CHAR * len(trailing)
    return score


def soft_format_score(text: str) -> float:
    return FORMAT_REWARD if SOFT_FORMAT_RE.search(text) else 0.0


def strict_format_score(text: str) -> float:
    return FORMAT_REWARD if STRICT_FORMAT_RE.match(text) else 0.0


def int_score(text: str) -> float:
    n = normalize_number(extract_xml_answer(text))
    return INT_REWARD if n is not None and re.fullmatch(r"-?\d+", n) else 0.0


def correctness_score(correct: bool, reward: float = CORRECT_REWARD) -> float:
    """`reward` (--correct_reward, default CORRECT_REWARD) for a right answer, 0 for a wrong one."""
    return reward if correct else 0.0


def cosine_score(length: float, max_len: float, correct: bool, clamp: bool = True) -> float:
    """Cosine-shaped length reward: from the zero-length value down (correct) or up (wrong) to the full-length value."""
    progress = length / max(max_len, 1)
    if clamp:
        progress = min(max(progress, 0.0), 1.0)
    at_full, at_zero = COSINE_CORRECT if correct else COSINE_WRONG
    return at_full + 0.5 * (at_zero - at_full) * (1.0 + math.cos(math.pi * progress))


# --- TRL reward functions ----------------------------------------------------------------------

def xmlcount_reward(prompts, completions, **kwargs) -> list[float]:
    return [xml_count_score(completion_text(c)) for c in completions]


def soft_format_reward(prompts, completions, **kwargs) -> list[float]:
    return [soft_format_score(completion_text(c)) for c in completions]


def strict_format_reward(prompts, completions, **kwargs) -> list[float]:
    return [strict_format_score(completion_text(c)) for c in completions]


def int_reward(prompts, completions, **kwargs) -> list[float]:
    return [int_score(completion_text(c)) for c in completions]


def make_correctness_reward(task: Task, correct_reward: float = CORRECT_REWARD):
    """Correctness under the task's verifier (`task.is_correct`): `correct_reward` (default 2.0) when right, else 0."""
    if isinstance(correct_reward, bool) or not isinstance(correct_reward, (int, float)) or not 0 < correct_reward < math.inf:
        raise ValueError(f"--correct_reward must be a finite number > 0, got {correct_reward!r}")
    correct_reward = float(correct_reward)

    def correctness_reward(prompts, completions, answer, **kwargs) -> list[float]:
        # the whole batch at once: a code task runs its programs in parallel, and remembers the verdicts for the later rewards
        verdicts = task.is_correct_batch([completion_text(c) for c in completions], list(answer))
        return [correctness_score(v, correct_reward) for v in verdicts]

    return correctness_reward


def make_cosine_reward(max_len: int, unit: str = "tokens", task: Task | None = None):
    """Cosine length reward over a budget of `max_len` tokens, right/wrong by `task.is_correct` (default gsm8k).

    unit="chars" reproduces the original (characters, no clamp).
    """
    task = task or get_task("gsm8k")
    if unit not in ("tokens", "chars"):
        raise ValueError(f"--cosine_length_unit must be 'tokens' or 'chars', got {unit!r}")

    def cosine_reward(prompts, completions, answer, completion_ids=None, **kwargs) -> list[float]:
        texts = [completion_text(c) for c in completions]
        if unit == "tokens" and completion_ids is not None:
            lengths = [len(ids) for ids in completion_ids]
        elif unit == "tokens":  # called outside TRL without ids: fall back to a rough token count
            lengths = [len(t.split()) for t in texts]
        else:
            lengths = [len(t) for t in texts]
        return [cosine_score(n, max_len, task.is_correct(t, a), clamp=(unit == "tokens")) for n, t, a in zip(lengths, texts, answer)]

    return cosine_reward


R1_FORMAT_REWARDS = [xmlcount_reward, soft_format_reward, strict_format_reward]


def r1_plan(task: Task) -> list[str]:
    """Names of the R1 set for a task: int_reward only where the task's answers are integers."""
    names = [f.__name__ for f in R1_FORMAT_REWARDS]
    if task.integer_answers:
        names.append(int_reward.__name__)
    return names + ["correctness_reward"]


# --- the --use_ir grammar ----------------------------------------------------------------------

# Canonical method -> (memory, level). memory: None, "exploit" (Memory-R) or "explore" (Memory-R+,
# which has both exploit and explore). The seed's names (no, knn, knn+) are aliases.
METHODS = {
    "r1": (None, None),
    "memoryr": ("exploit", "response"),
    "memoryr+": ("explore", "response"),
    "memoryr_sent": ("exploit", "sentence"),
    "memoryr+_sent": ("explore", "sentence"),
    # Exploration peers: R1 plus one exploration signal other than the memory (exploration.py; the
    # entropy bonus is trl's loss term, see `entropy_coef`). Not combined with the memory methods:
    # each is compared against them, and the entropy bonus can join any method through --entropy_coef.
    "entropy": (None, None),
    "outcome_ucb": (None, None),
    "novelty": (None, None),
    "surprise": (None, None),  # also joins a memory method as Agent57's multiplier: --surprise_multiplier (surprise.py)
}
# The exploration peers that are reward functions: method -> reward name (`exploration.py`).
EXPLORATION_REWARDS = {"outcome_ucb": "outcome_ucb_reward", "novelty": "novelty_reward", "surprise": "surprise_reward"}
# Rewards that are not about the task (format, correctness, length) but about the policy's exploration:
# what --intrinsic_mix mixes (intrinsic_mix.py). Every other reward of a plan is extrinsic.
INTRINSIC_REWARDS = ("exploit_reward", "explore_reward", "outcome_ucb_reward", "novelty_reward", "surprise_reward")
# Entropy-bonus coefficient that `--use_ir entropy` means when --entropy_coef is not given: 0.001, the
# usual order in PPO/GRPO recipes for LLMs. The bonus is the mean per-token entropy (a few nats for a
# small model) against a policy loss whose advantages are of order 1, so larger values soon dominate.
ENTROPY_COEF_DEFAULT = 0.001
ALIASES = {"no": "r1", "knn": "memoryr", "knn+": "memoryr+", "knn_sent": "memoryr_sent", "knn+_sent": "memoryr+_sent"}


def _use_ir_table() -> dict[str, tuple[str, bool]]:
    """Every accepted --use_ir spelling -> (canonical method, cosine on?)."""
    table = {}
    for name, method in [(m, m) for m in METHODS] + list(ALIASES.items()):
        table[name] = (method, False)
        table[f"{name}_cosine"] = (method, True)
        if name.endswith("+"):  # the seed's spelling: "memoryr+cosine" is Memory-R+ with cosine
            table[f"{name}cosine"] = (method, True)
    table["cosine"] = ("r1", True)
    return table


USE_IR_CHOICES = _use_ir_table()


def parse_use_ir(use_ir: str) -> tuple[str, bool]:
    """(canonical method, cosine) for a --use_ir value; ValueError listing the valid values otherwise."""
    if use_ir not in USE_IR_CHOICES:
        raise ValueError(f"invalid --use_ir {use_ir!r}; valid values: {', '.join(USE_IR_CHOICES)}")
    return USE_IR_CHOICES[use_ir]


def memory_of(use_ir: str) -> str | None:
    """The episodic memory a --use_ir value uses: None, "exploit" (Memory-R) or "explore" (Memory-R+)."""
    return METHODS[parse_use_ir(use_ir)[0]][0]


def reward_plan(use_ir: str, exploit_weight: float = 1.0, explore_weight: float = 1.0, outcome_ucb_weight: float = 1.0,
                novelty_weight: float = 1.0, task: str = "gsm8k", surprise_weight: float = 1.0, **_) -> list[tuple[str, float]]:
    """(reward name, weight) pairs, in order, for a --use_ir value: what `make_reward_funcs` builds, without building it.

    The R1 set always (int_reward only for a task with integer answers); then the cosine reward if asked;
    then exploit (Memory-R) or exploit and explore (Memory-R+), or the exploration peer's reward
    (outcome_ucb, novelty, surprise). `--dry_run` prints this without loading the embedder.
    """
    method, cosine = parse_use_ir(use_ir)
    memory, _level = METHODS[method]
    plan = [(name, 1.0) for name in r1_plan(get_task(task))]
    if cosine:
        plan.append(("cosine_reward", 1.0))
    if memory is not None:
        plan.append(("exploit_reward", exploit_weight))
    if memory == "explore":
        plan.append(("explore_reward", explore_weight))
    if method in EXPLORATION_REWARDS:
        plan.append((EXPLORATION_REWARDS[method], {"outcome_ucb": outcome_ucb_weight, "novelty": novelty_weight,
                                                   "surprise": surprise_weight}[method]))
    return plan


def intrinsic_ranges(plan: list[tuple[str, float]], outcome_ucb_c: float | None = None, outcome_ucb_batch_c: float | None = None,
                     surprise_multiplier: bool = False, **_) -> dict[str, tuple[float, float]]:
    """{intrinsic reward of `plan`: (lowest, highest) value it can return}: band's span (intrinsic_mix.py).

    The min-max normalised rewards (exploit, explore, novelty, surprise) lie in [0, 1]; exploit and explore times
    Agent57's multiplier (--surprise_multiplier) in [0, L]; outcome_ucb in [-c_b, c].
    """
    from exploration import DEFAULT_BATCH_C, DEFAULT_UCB_C
    from surprise import AGENT57_MAX_MULTIPLIER

    memory_hi = AGENT57_MAX_MULTIPLIER if surprise_multiplier else 1.0
    c = DEFAULT_UCB_C if outcome_ucb_c is None else float(outcome_ucb_c)
    c_b = DEFAULT_BATCH_C if outcome_ucb_batch_c is None else float(outcome_ucb_batch_c)
    known = {"exploit_reward": (0.0, memory_hi), "explore_reward": (0.0, memory_hi), "novelty_reward": (0.0, 1.0),
             "surprise_reward": (0.0, 1.0), "outcome_ucb_reward": (-c_b, c)}
    return {name: known[name] for name, _ in plan if name in INTRINSIC_REWARDS}


def mix_plan(use_ir: str, intrinsic_mix: str = "sum", task: str = "gsm8k", **options) -> dict:
    """What --intrinsic_mix does to this --use_ir's rewards (for --dry_run): mode, extrinsic and intrinsic rewards, band's span."""
    from intrinsic_mix import describe_mix

    plan = reward_plan(use_ir, task=task, **options)
    return describe_mix(intrinsic_mix, plan, intrinsic_ranges(plan, **options))


def entropy_coef(use_ir: str, entropy_coef: float | None = None) -> float:
    """trl's `entropy_coef` for a run: the flag when given (any method), else ENTROPY_COEF_DEFAULT for `entropy`, else 0 (off)."""
    if entropy_coef is not None:
        return float(entropy_coef)
    return ENTROPY_COEF_DEFAULT if parse_use_ir(use_ir)[0] == "entropy" else 0.0


def make_reward_funcs(use_ir: str = "r1", k: int = 1, *, task: str = "gsm8k", max_completion_length: int = 200,
                      cosine_length_unit: str = "tokens", exploit_weight: float = 1.0,
                      explore_weight: float = 1.0, outcome_ucb_weight: float = 1.0, novelty_weight: float = 1.0,
                      correct_reward: float = CORRECT_REWARD, surprise_weight: float = 1.0, intrinsic_mix: str = "sum",
                      seed: int = 0, **memory_options):
    """(reward_funcs, reward_weights) for a --use_ir value on `task`, in the order of `reward_plan`.

    Every reward that needs "is this right" (correctness, cosine, the memory's split) gets the task's verifier;
    `correct_reward` is what correctness_reward gives a right answer (--correct_reward).

    `memory_options` go to the memory class unchanged and are named like their flags
    (`embedder`, `explore_warmup`, `memory_write_first`, ...), except the `outcome_ucb_*` options,
    which go to `exploration.OutcomeUCBReward`; the novelty reward takes the memory's `embedder` and
    `norm_window`, the surprise reward (`surprise.SurpriseReward`) those, the `surprise_*` options and `seed`
    (its networks' init). `surprise_multiplier=True` with a memory method multiplies the memory rewards by
    surprise's Agent57 factor. Every intrinsic reward is mixed as `intrinsic_mix` says (`intrinsic_mix.py`).
    """
    from intrinsic_mix import IntrinsicMix

    if k < 1:
        raise ValueError(f"--k must be >= 1, got {k}")
    spec = get_task(task)
    plan = reward_plan(use_ir, exploit_weight, explore_weight, outcome_ucb_weight, novelty_weight, task=task,
                       surprise_weight=surprise_weight)
    ucb_options = {n: memory_options.pop(n) for n in list(memory_options) if n.startswith("outcome_ucb_")}
    surprise_options = {n: memory_options.pop(n) for n in list(memory_options) if n.startswith("surprise_")}
    method, _cosine = parse_use_ir(use_ir)
    memory, level = METHODS[method]
    built = {f.__name__: f for f in R1_FORMAT_REWARDS + [int_reward]}
    built["correctness_reward"] = make_correctness_reward(spec, correct_reward)
    if any(name == "cosine_reward" for name, _ in plan):
        built["cosine_reward"] = make_cosine_reward(max_completion_length, cosine_length_unit, spec)
    if memory is not None:
        if level == "sentence":
            from ir_knn_st2 import SentenceMemoryReward as Memory
        else:
            from ir_knn_st import MemoryReward as Memory
        mem = Memory(k=k, explore=(memory == "explore"), is_correct=spec.is_correct, **memory_options)
        built["exploit_reward"] = mem.exploit_reward
        built["explore_reward"] = mem.explore_reward
    if method == "outcome_ucb":
        from exploration import OutcomeUCBReward

        built["outcome_ucb_reward"] = OutcomeUCBReward(**ucb_options).outcome_ucb_reward
    if method == "novelty":
        from exploration import NoveltyReward

        shared = {n: memory_options[n] for n in ("embedder", "norm_window") if n in memory_options}
        built["novelty_reward"] = NoveltyReward(**shared).novelty_reward
    if surprise_options.get("surprise_multiplier") and memory is None:
        raise ValueError(f"--surprise_multiplier multiplies the memory rewards; --use_ir {use_ir} has none (use knn, knn+, ...)")
    if method == "surprise" or surprise_options.get("surprise_multiplier"):
        from surprise import SurpriseReward

        shared = {n: memory_options[n] for n in ("embedder", "norm_window", "embed_backend") if n in memory_options}
        surprise = SurpriseReward(**shared, **surprise_options, seed=seed, encoder=mem if memory is not None else None)
        if surprise.multiplier:
            for name in (n for n, _ in plan if n in ("exploit_reward", "explore_reward")):
                built[name] = surprise.modulate(built[name])
        else:
            built["surprise_reward"] = surprise.surprise_reward
    ranges = intrinsic_ranges(plan, **ucb_options, **surprise_options)
    mix = IntrinsicMix(intrinsic_mix, [(built[n], w) for n, w in plan if n not in ranges], [(n, w, ranges[n]) for n, w in plan if n in ranges])
    built.update({n: mix.wrap(built[n]) for n in ranges})
    return [built[name] for name, _ in plan], [w for _, w in plan]


def stateful_rewards(reward_funcs) -> list:
    """The distinct objects behind `reward_funcs` that keep state to checkpoint (they have save/load).

    A wrapped reward (the intrinsic mix, surprise's multiplier) leads through `__wrapped__` to the one it wraps.
    """
    owners = []
    for f in reward_funcs:
        while f is not None:
            owner = getattr(f, "__self__", None)
            if owner is not None and hasattr(owner, "save") and hasattr(owner, "load") and owner not in owners:
                owners.append(owner)
            f = getattr(f, "__wrapped__", None)
    return owners

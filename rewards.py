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

Every reward is declared once, in `REWARDS` (a `RewardSpec`: name, kind extrinsic or intrinsic, how to build it,
weight flag and default, options, saved state, which runs get it); `METHODS`' exploration peers,
`EXPLORATION_REWARDS`, `INTRINSIC_REWARDS`, the weights of `reward_plan`, `intrinsic_ranges` and the options
`run_gsm8k.py` passes (`option_names`) are derived from it, and a reward without an entry is an error, never a
default. `make_reward_funcs(use_ir, ...)` is the only place a reward list is built: `run_gsm8k.py`, the
tests and the benchmarks all call it.
"""
import math
import re
from dataclasses import dataclass, field
from typing import Callable, NamedTuple

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


# --- the registry: one declaration per reward ----------------------------------------------------

EXTRINSIC, INTRINSIC = "extrinsic", "intrinsic"  # about the task (format, correctness, length) / about exploration


class Run(NamedTuple):
    """What decides which rewards a run gets: its --use_ir method, the method's memory and level, cosine on?, the task."""
    method: str
    memory: str | None
    level: str | None
    cosine: bool
    task: Task


@dataclass(frozen=True)
class RewardSpec:
    """One reward, declared once in REWARDS: every list the factory, the flags, --dry_run, --intrinsic_mix and the
    checkpoints need is derived from these entries.

    name: the TRL reward function's `__name__` (TRL logs it under it). kind: EXTRINSIC or INTRINSIC (what
    --intrinsic_mix mixes). build: (BuildContext) -> the reward function. weight_flag: the flag (and factory
    keyword) that sets its weight, None for a fixed `default_weight`. options: the flags that configure it
    (`run_gsm8k.py` passes each under its own name). state: the folder its saved state takes in a checkpoint,
    None when it keeps none; the factory checks that the built function's owner can save (`save`/`load`) exactly
    when one is declared. method: the --use_ir method it defines (an exploration peer), else None and `when`
    says which runs get it. value_range: for an intrinsic reward, (options) -> (lowest, highest) value (band's span).
    """
    name: str
    kind: str
    build: Callable[["BuildContext"], Callable]
    weight_flag: str | None = None
    default_weight: float = 1.0
    options: tuple[str, ...] = ()
    state: str | None = None
    method: str | None = None
    when: Callable[[Run], bool] | None = None
    value_range: Callable[[dict], tuple[float, float]] | None = None

    def included(self, run: Run) -> bool:
        """Does a run get this reward? Its own method's runs for a peer, else what `when` says."""
        return run.method == self.method if self.method is not None else bool(self.when(run))


@dataclass
class BuildContext:
    """What a reward's `build` reads: the task, the run, the options given (by flag name), and objects rewards share."""
    task: Task
    run: Run
    k: int
    max_completion_length: int
    options: dict
    shared: dict = field(default_factory=dict)  # one memory for exploit and explore; one surprise for reward or multiplier

    def given(self, *names: str) -> dict:
        """The options among `names` that the caller gave (the rest keep the class's own defaults)."""
        return {n: self.options[n] for n in names if n in self.options}


MEMORY_OPTIONS = ("embedder", "embed_backend", "explore_warmup", "explore_warmup_unit", "memory_write_first",
                  "memory_key_first_prompt", "memory_max_values", "memory_max_keys", "norm_window")
SURPRISE_OPTIONS = ("embedder", "norm_window", "embed_backend", "surprise_lr", "surprise_multiplier", "seed")


def _memory(ctx: BuildContext):
    """The run's episodic memory (Memory-R's, or Memory-R+'s with explore), built once for exploit and explore."""
    if "memory" not in ctx.shared:
        if ctx.run.level == "sentence":
            from ir_knn_st2 import SentenceMemoryReward as Memory
        else:
            from ir_knn_st import MemoryReward as Memory
        ctx.shared["memory"] = Memory(k=ctx.k, explore=(ctx.run.memory == "explore"), is_correct=ctx.task.is_correct,
                                      **ctx.given(*MEMORY_OPTIONS))
    return ctx.shared["memory"]


def _surprise(ctx: BuildContext):
    """The run's random network distillation (surprise.py): the surprise reward's, or the multiplier's (on the memory's encoder)."""
    if "surprise" not in ctx.shared:
        from surprise import SurpriseReward

        options = ctx.given(*SURPRISE_OPTIONS)
        encoder = _memory(ctx) if ctx.run.memory is not None else None
        ctx.shared["surprise"] = SurpriseReward(**options, encoder=encoder)
    return ctx.shared["surprise"]


def _outcome_ucb(ctx: BuildContext):
    from exploration import OutcomeUCBReward

    return OutcomeUCBReward(**ctx.given("outcome_ucb_c", "outcome_ucb_batch_c", "outcome_ucb_max_questions",
                                        "outcome_ucb_max_answers")).outcome_ucb_reward


def _novelty(ctx: BuildContext):
    from exploration import NoveltyReward

    return NoveltyReward(**ctx.given("embedder", "norm_window")).novelty_reward


def _memory_range(options: dict) -> tuple[float, float]:
    """Min-max normalised: [0, 1]; times Agent57's multiplier (--surprise_multiplier): [0, L]."""
    from surprise import AGENT57_MAX_MULTIPLIER

    return 0.0, AGENT57_MAX_MULTIPLIER if options.get("surprise_multiplier") else 1.0


def _outcome_ucb_range(options: dict) -> tuple[float, float]:
    """[-c_b, c]: the batch penalty's scale below 0, the bonus's above."""
    from exploration import DEFAULT_BATCH_C, DEFAULT_UCB_C

    c, c_b = options.get("outcome_ucb_c"), options.get("outcome_ucb_batch_c")
    return -(DEFAULT_BATCH_C if c_b is None else float(c_b)), DEFAULT_UCB_C if c is None else float(c)


def _unit_range(options: dict) -> tuple[float, float]:
    return 0.0, 1.0  # min-max normalised over a running window


def _always(run: Run) -> bool:
    return True


# Every reward, in the order a run lists them (TRL's order, and --dry_run's). Adding a reward: one entry here, plus
# its function (and a flag in run_gsm8k.py for each option it names).
REWARDS = {spec.name: spec for spec in [
    RewardSpec("xmlcount_reward", EXTRINSIC, lambda ctx: xmlcount_reward, when=_always),
    RewardSpec("soft_format_reward", EXTRINSIC, lambda ctx: soft_format_reward, when=_always),
    RewardSpec("strict_format_reward", EXTRINSIC, lambda ctx: strict_format_reward, when=_always),
    # only where the task's answers are integers
    RewardSpec("int_reward", EXTRINSIC, lambda ctx: int_reward, when=lambda run: run.task.integer_answers),
    RewardSpec("correctness_reward", EXTRINSIC, lambda ctx: make_correctness_reward(ctx.task, **ctx.given("correct_reward")),
               options=("correct_reward",), when=_always),
    RewardSpec("cosine_reward", EXTRINSIC,
               lambda ctx: make_cosine_reward(ctx.max_completion_length, ctx.options.get("cosine_length_unit", "tokens"), ctx.task),
               options=("cosine_length_unit",), when=lambda run: run.cosine),
    RewardSpec("exploit_reward", INTRINSIC, lambda ctx: _memory(ctx).exploit_reward, weight_flag="exploit_weight",
               options=MEMORY_OPTIONS, state="memory", when=lambda run: run.memory is not None, value_range=_memory_range),
    RewardSpec("explore_reward", INTRINSIC, lambda ctx: _memory(ctx).explore_reward, weight_flag="explore_weight",
               options=MEMORY_OPTIONS, state="memory", when=lambda run: run.memory == "explore", value_range=_memory_range),
    RewardSpec("outcome_ucb_reward", INTRINSIC, _outcome_ucb, weight_flag="outcome_ucb_weight",
               options=("outcome_ucb_c", "outcome_ucb_batch_c", "outcome_ucb_max_questions", "outcome_ucb_max_answers"),
               state="outcome_ucb", method="outcome_ucb", value_range=_outcome_ucb_range),
    RewardSpec("novelty_reward", INTRINSIC, _novelty, weight_flag="novelty_weight", options=("embedder", "norm_window"),
               state="novelty", method="novelty", value_range=_unit_range),
    RewardSpec("surprise_reward", INTRINSIC, lambda ctx: _surprise(ctx).surprise_reward, weight_flag="surprise_weight",
               options=SURPRISE_OPTIONS, state="surprise", method="surprise", value_range=_unit_range),
]}
# Options of the factory itself, not of one reward: how the intrinsic rewards join the rest (intrinsic_mix.py).
FACTORY_OPTIONS = ("intrinsic_mix",)


def check_registry(registry: dict) -> None:
    """Every entry well formed (checked at import, so a bad entry fails at start-up): ValueError naming it."""
    for name, spec in registry.items():
        problem = (f"kind {spec.kind!r} is neither {EXTRINSIC!r} nor {INTRINSIC!r}" if spec.kind not in (EXTRINSIC, INTRINSIC)
                   else "the key differs from its name" if name != spec.name
                   else "an intrinsic reward needs a value_range (band's span)" if spec.kind == INTRINSIC and spec.value_range is None
                   else "an extrinsic reward has no value_range" if spec.kind == EXTRINSIC and spec.value_range is not None
                   else "give exactly one of method and when" if (spec.method is None) == (spec.when is None)
                   else None)
        if problem:
            raise ValueError(f"rewards.REWARDS[{name!r}]: {problem}")


check_registry(REWARDS)


def registered(name: str) -> RewardSpec:
    """The registry entry of a reward; ValueError naming it if it has none (never a silent default)."""
    if name not in REWARDS:
        raise ValueError(f"reward {name!r} is not in rewards.REWARDS; declare it there (name, kind, weight, options, state)")
    return REWARDS[name]


def option_names() -> list[str]:
    """Every option the rewards take, weights included, each once, in registry order: what `run_gsm8k.py` passes."""
    names = [n for spec in REWARDS.values() for n in (*spec.options, spec.weight_flag) if n]
    return list(dict.fromkeys(names + list(FACTORY_OPTIONS)))


# --- the --use_ir grammar ----------------------------------------------------------------------

# Canonical method -> (memory, level). memory: None, "exploit" (Memory-R) or "explore" (Memory-R+,
# which has both exploit and explore). The seed's names (no, knn, knn+) are aliases.
METHODS = {
    "r1": (None, None),
    "memoryr": ("exploit", "response"),
    "memoryr+": ("explore", "response"),
    "memoryr_sent": ("exploit", "sentence"),
    "memoryr+_sent": ("explore", "sentence"),
    # Exploration peers: R1 plus one exploration signal other than the memory. The entropy bonus is trl's loss term
    # (see `entropy_coef`); the others are the rewards of REWARDS that name a method (exploration.py, surprise.py).
    # Not combined with the memory methods: each is compared against them, and the entropy bonus can join any
    # method through --entropy_coef; surprise also joins a memory method as Agent57's multiplier (--surprise_multiplier).
    "entropy": (None, None),
    **{spec.method: (None, None) for spec in REWARDS.values() if spec.method},
}
# The exploration peers that are reward functions: method -> reward name. Derived from REWARDS.
EXPLORATION_REWARDS = {spec.method: spec.name for spec in REWARDS.values() if spec.method}
# Rewards that are not about the task but about the policy's exploration: what --intrinsic_mix mixes
# (intrinsic_mix.py). Derived from REWARDS: every other reward is extrinsic.
INTRINSIC_REWARDS = tuple(name for name, spec in REWARDS.items() if spec.kind == INTRINSIC)
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


def run_of(use_ir: str, task: str = "gsm8k") -> Run:
    method, cosine = parse_use_ir(use_ir)
    memory, level = METHODS[method]
    return Run(method, memory, level, cosine, get_task(task))


def reward_plan(use_ir: str, task: str = "gsm8k", **options) -> list[tuple[str, float]]:
    """(reward name, weight) pairs, in REWARDS' order, for a --use_ir value: what `make_reward_funcs` builds, without building it.

    The R1 set always (int_reward only for a task with integer answers); then the cosine reward if asked;
    then exploit (Memory-R) or exploit and explore (Memory-R+), or the exploration peer's reward
    (outcome_ucb, novelty, surprise). A weight is its `weight_flag` option when given, else the entry's default.
    `--dry_run` prints this without loading the embedder.
    """
    run = run_of(use_ir, task)
    return [(name, options.get(spec.weight_flag, spec.default_weight) if spec.weight_flag else spec.default_weight)
            for name, spec in REWARDS.items() if spec.included(run)]


def intrinsic_ranges(plan: list[tuple[str, float]], **options) -> dict[str, tuple[float, float]]:
    """{intrinsic reward of `plan`: (lowest, highest) value it can return under `options`}: band's span (intrinsic_mix.py).

    The min-max normalised rewards (exploit, explore, novelty, surprise) lie in [0, 1]; exploit and explore times
    Agent57's multiplier (--surprise_multiplier) in [0, L]; outcome_ucb in [-c_b, c]. A name without an entry is
    an error, not an extrinsic reward by default.
    """
    return {name: registered(name).value_range(options) for name, _ in plan if registered(name).kind == INTRINSIC}


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


def _owners(func) -> list:
    """The objects with save/load behind a reward function, following `__wrapped__` (the mix, the multiplier)."""
    owners = []
    while func is not None:
        owner = getattr(func, "__self__", None)
        if owner is not None and hasattr(owner, "save") and hasattr(owner, "load") and owner not in owners:
            owners.append(owner)
        func = getattr(func, "__wrapped__", None)
    return owners


def make_reward_funcs(use_ir: str = "r1", k: int = 1, *, task: str = "gsm8k", max_completion_length: int = 200,
                      intrinsic_mix: str = "sum", **options):
    """(reward_funcs, reward_weights) for a --use_ir value on `task`, in the order of `reward_plan`.

    Each reward is built by its REWARDS entry from the options it declares, named like their flags
    (`embedder`, `explore_warmup`, `correct_reward`, `outcome_ucb_c`, `surprise_lr`, `seed`, ...); an option no
    entry declares is an error. Every reward that needs "is this right" (correctness, cosine, the memory's split)
    gets the task's verifier. `surprise_multiplier=True` with a memory method multiplies the memory rewards by
    surprise's Agent57 factor (surprise.py). Every intrinsic reward is mixed as `intrinsic_mix` says (`intrinsic_mix.py`).
    """
    from intrinsic_mix import IntrinsicMix

    if k < 1:
        raise ValueError(f"--k must be >= 1, got {k}")
    unknown = [n for n in options if n not in option_names()]
    if unknown:
        raise ValueError(f"unknown reward option(s) {', '.join(unknown)}: no entry of rewards.REWARDS declares them "
                         f"(known: {', '.join(option_names())})")
    run = run_of(use_ir, task)
    plan = reward_plan(use_ir, task=task, **options)
    if options.get("surprise_multiplier") and run.memory is None:
        raise ValueError(f"--surprise_multiplier multiplies the memory rewards; --use_ir {use_ir} has none (use knn, knn+, ...)")
    ctx = BuildContext(run.task, run, k, max_completion_length, options)
    built = {name: REWARDS[name].build(ctx) for name, _ in plan}
    if options.get("surprise_multiplier"):  # a modifier of the memory rewards, not a reward of its own
        surprise = _surprise(ctx)
        built.update({name: surprise.modulate(built[name]) for name, _ in plan if REWARDS[name].state == "memory"})
    for name, func in built.items():
        if getattr(func, "__name__", None) != name:
            raise ValueError(f"REWARDS[{name!r}] built a function named {getattr(func, '__name__', func)!r}: "
                             "TRL logs a reward under its function's name, so they must match")
        if bool(_owners(func)) != (REWARDS[name].state is not None):
            raise ValueError(f"REWARDS[{name!r}] declares state {REWARDS[name].state!r}, but its function's owner "
                             f"{'can' if _owners(func) else 'cannot'} save and load: fix the entry's `state`")
    ranges = intrinsic_ranges(plan, **options)
    mix = IntrinsicMix(intrinsic_mix, [(built[n], w) for n, w in plan if n not in ranges], [(n, w, ranges[n]) for n, w in plan if n in ranges])
    built.update({n: mix.wrap(built[n]) for n in ranges})
    return [built[name] for name, _ in plan], [w for _, w in plan]


def stateful_rewards(reward_funcs) -> list:
    """The distinct objects behind `reward_funcs` that keep state to checkpoint (they have save/load).

    A wrapped reward (the intrinsic mix, surprise's multiplier) leads through `__wrapped__` to the one it wraps.
    """
    owners = []
    for f in reward_funcs:
        owners += [o for o in _owners(f) if o not in owners]
    return owners

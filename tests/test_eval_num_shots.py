"""The medium tier (`run_gsm8k.py --do_eval`) and the strict tier (`run_eval.py`) agree question by question with
few-shot prompts (--num_shots 1 and 2): the seed's to-do "eval loop accuracy seems wrong when num_shots>0".

Both tiers run for real, as a user runs them, on one checkpoint and one set of questions. The checkpoint is a
tiny Llama whose greedy output is fixed by the question's last word (`fixed_output_model`): questions ending in
" alpha" get "<answer>\\n7", questions ending in " beta" get "I do not know.". Those are responses the tiers
must read alike (one number inside the tag; no tag and no number), so any disagreement is a bug, not a
difference by design. The " beta" questions' golds include the answers of the few-shot exemplars in the
prompt: a tier that scored the prompt's text, or read an exemplar's answer, would call them right.
"""
import json
import random
import subprocess

import pytest

from eval_cases import ROOT, SUBPROCESS_ENV, eval_python
from prompts import EXEMPLARS

# The fixed outputs: the question's last token -> the completion the model writes after it (then end of text).
OUTPUTS = {" alpha": "<answer>\n7", " beta": "I do not know."}
# A chat template that joins the messages' texts, so the prompt ends with the question's last word (the
# SmolLM2 template would end every prompt with the same assistant header, and the output could not vary).
TEMPLATE = "{% for m in messages %}{% if not loop.first %}\n\n{% endif %}{{ m['content'] }}{% endfor %}"
LOGIT = 10.0  # the fixed next token's logit scale: ~40 against 0 for every other token, far beyond one training step
GOLDS_ALPHA = ["7", "58"]  # right, and wrong (58 is an exemplar's answer: the tag's 7 must win)
GOLDS_BETA = [a for _, _, a in EXEMPLARS] + ["1"]  # every exemplar's answer: wrong for a tag-less, number-less response
L = 16  # generation budget of both tiers: the fixed outputs end within 7 tokens


def fixed_output_model(out, tokenizer_dir):
    """A Llama whose next token depends only on the current token: attention and MLP write nothing, so the residual
    stream is the token's embedding, which is one-hot for each token of the fixed chains and a shared default
    direction (-> end of text) for every other token. Greedy decoding then follows the chain from the prompt's last
    token, whatever came before it, with any padding and batch."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    tok.chat_template = TEMPLATE
    chains = {}
    for start, text in OUTPUTS.items():
        ids = tok(start + text, add_special_tokens=False)["input_ids"]
        assert tok.decode(ids[1:]) == text and len(tok(start, add_special_tokens=False)["input_ids"]) == 1
        for a, b in zip(ids, ids[1:] + [tok.eos_token_id]):
            assert chains.setdefault(a, b) == b, f"token {tok.decode([a])!r} would need two successors"
    hidden = 16
    assert len(chains) < hidden
    config = LlamaConfig(vocab_size=len(tok), hidden_size=hidden, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=2048,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                         tie_word_embeddings=False)
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        embed, head = model.model.embed_tokens.weight, model.lm_head.weight
        embed.zero_()
        head.zero_()
        embed[:, 0] = 1.0  # the default direction
        head[tok.eos_token_id, 0] = LOGIT
        for i, (a, b) in enumerate(chains.items(), start=1):
            embed[a] = 0.0
            embed[a, i] = 1.0
            head[b, i] = LOGIT
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def question(i: int, end: str) -> str:
    return f"Question {i}: how many marbles are in box {i}?{end}"


@pytest.fixture(scope="module")
def setup(tmp_path_factory, smollm2_dir):
    root = tmp_path_factory.mktemp("num-shots")
    model = fixed_output_model(root / "model", smollm2_dir)
    rows = [(question(i, " alpha"), g) for i, g in enumerate(GOLDS_ALPHA)]
    rows += [(question(10 + i, " beta"), g) for i, g in enumerate(GOLDS_BETA)]
    data = root / "data"
    (data / "gsm8k").mkdir(parents=True)
    for split, split_rows in (("test", rows), ("train", rows[:4])):
        (data / "gsm8k" / f"{split}.jsonl").write_text(
            "".join(json.dumps({"question": q, "answer": f"It is {g}.\n#### {g}"}) + "\n" for q, g in split_rows))
    return model, data, rows


def medium_tier(model, data, out, num_shots, seed):
    """run_gsm8k.py --do_eval (in this process: its start-up is paid once): one training step, then the medium tier's
    eval of the step's weights, which checkpoint-1 holds; its per-question rows."""
    import run_gsm8k

    argv = ["--model_name", str(model), "--data_dir", str(data), "--use_ir", "r1", "--num_shots", str(num_shots),
            "--seed", str(seed), "--bs", "2", "--gc", "1", "--num_generations", "2", "--L", str(L), "--max_steps", "1",
            "--save_steps", "1", "--do_eval", "--eval_steps", "1", "--eval_batch_size", "4", "--report_to", "none",
            "--output_dir", str(out)]
    assert run_gsm8k.main(argv) == 0
    stats = [json.loads(line) for line in open(out / "training_stats.jsonl")]
    [logged] = [s["eval_accuracy"] for s in stats if "eval_accuracy" in s]
    rows = [json.loads(line) for line in open(out / "eval_details" / "step-1.jsonl")]
    assert logged == pytest.approx(sum(r["correct"] for r in rows) / len(rows))  # the logged accuracy is these verdicts'
    return rows


def strict_tier(checkpoint, data, out, num_shots, seed):
    """run_eval.py on the same checkpoint and questions, as `run_compare.py` runs it for a run of `seed`; its details rows."""
    import run_compare

    settings = {"eval_samples": -1, "task_options": None, "eval_num_shots": num_shots, "eval_max_new_tokens": L,
                "eval_batch_size": 3}
    cmd = run_compare.eval_command(settings, str(eval_python()), str(checkpoint), ["gsm8k"], out, str(data), seed=seed)
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, env=SUBPROCESS_ENV)
    assert r.returncode == 0, r.stderr[-3000:]
    return [json.loads(line) for line in open(out / "gsm8k" / "details.jsonl")]


@pytest.mark.parametrize("num_shots,seed", [(1, 0), (2, 1)])
def test_medium_and_strict_tiers_agree_with_shots(setup, tmp_path, num_shots, seed):
    model, data, rows = setup
    shots = [a for _, _, a in random.Random(seed).sample(list(EXEMPLARS), num_shots)]
    assert set(shots) <= set(GOLDS_BETA)  # the prompt's exemplar answers are golds of tag-less responses
    medium = medium_tier(model, data, tmp_path / "run", num_shots, seed)
    strict = strict_tier(tmp_path / "run" / "checkpoint-1", data, tmp_path / "eval", num_shots, seed)
    assert [m["question"] for m in medium] == [q for q, _ in rows] and len(strict) == len(rows)
    for (q, gold), m, s in zip(rows, medium, strict):
        assert m["prompt"] == s["prompt"], q  # the same exemplars, in the same order, through the same template
        assert all(f"\n{a}\n</answer>" in m["prompt"] for a in shots)
        expected = OUTPUTS[" alpha" if q.endswith(" alpha") else " beta"]
        assert m["completion"].strip() == expected and s["response"].strip() == expected, (q, m, s)  # the model is fixed
        right = expected == OUTPUTS[" alpha"] and gold == "7"
        assert (m["correct"], s["correct"], s["verifier_correct"]) == (right, right, right), (q, gold, m, s)
    assert sum(m["correct"] for m in medium) == 1

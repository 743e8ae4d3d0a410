"""A run's settings from the command that launched it: a shell script given as `curve --config run.sh`, or the
command line a text log printed. What `bitcheck/user/runspec.py` reads like any config's keys.

    command_settings(open("scripts/run124M.sh").read())
    # {"learning_rate": 0.0006, "warmup_steps": 700, "final_lr_ratio": 0.0, "total_batch_size": 524288, ...}

Read: llm.c's train_gpt2cu / train_gpt2fp32cu / train_llama3cu flags (LLMC_FLAGS, with llm.c's defaults for the
schedule flags a command leaves out: `-q` 1.0 means no decay), `--name=value` and `--name value` long flags of
any launcher (python, torchrun, accelerate, deepspeed, srun, mpirun, ./binary), and shell variables assigned
earlier in the script (`LR=6e-4` ... `-l $LR`). Lines are joined at a trailing backslash; comments are skipped.
Only lines that launch something are read, so a log's prose is never taken for flags.
"""
from __future__ import annotations

import re
import shlex

# llm.c's flags (train_gpt2.cu's usage text) -> the config names runspec.CONFIG_KEYS knows
LLMC_FLAGS = {"-l": "learning_rate", "-u": "warmup_steps", "-q": "final_lr_ratio", "-x": "max_steps",
              "-c": "weight_decay", "-d": "total_batch_size", "-b": "per_device_train_batch_size", "-t": "seq_len",
              "-k": "lr_scheduler", "-e": "model"}
# what llm.c uses when a schedule flag is left out
LLMC_DEFAULTS = {"learning_rate": 3e-4, "warmup_steps": 0, "final_lr_ratio": 1.0, "lr_scheduler": "cosine",
                 "weight_decay": 0.0}
LLMC = re.compile(r"train_(gpt2|llama3)\w*")
LAUNCHERS = re.compile(r"^(?:[$+#>]\s*)?(?:\S*/)?(?:python3?|torchrun|accelerate|deepspeed|srun|mpirun|mpiexec|"
                       r"uv run|\./\S+|\S*train_\S+)\b")
# llm.c's GPT-2 model descriptors: depth -> (channels, heads); vocabulary 50,257
GPT2_DEPTHS = {6: (384, 6), 12: (768, 12), 24: (1024, 16), 36: (1280, 20), 48: (1600, 25), 60: (1920, 30),
               72: (2880, 30), 84: (3456, 36)}


def _lines(text: str) -> list[str]:
    """Logical lines: backslash continuations joined, comments dropped."""
    out, cur = [], ""
    for raw in text.splitlines():
        line = raw.rstrip()
        if cur == "" and line.lstrip().startswith("#"):
            continue
        if line.endswith("\\"):
            cur += line[:-1] + " "
            continue
        out.append((cur + line).strip())
        cur = ""
    if cur:
        out.append(cur.strip())
    return [line for line in out if line]


def _number(text: str):
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return {"true": True, "false": False}.get(text.lower(), text)


def _model(descriptor: str) -> dict:
    """llm.c's -e: 'd12' / 'gpt2:d12' -> the GPT-2 shape; a checkpoint file named like gpt2_124M.bin -> its size."""
    m = re.fullmatch(r"(?:gpt2:)?d(\d+)", descriptor)
    if m and int(m.group(1)) in GPT2_DEPTHS:
        channels, heads = GPT2_DEPTHS[int(m.group(1))]
        return {"n_layer": int(m.group(1)), "n_embd": channels, "n_head": heads, "vocab_size": 50257}
    m = re.search(r"(\d+(?:\.\d+)?)([MB])\b", descriptor)
    return {"n_params": f"{m.group(1)}{m.group(2)}"} if m else {}


def command_settings(text: str) -> dict:
    """Settings of the launch commands in `text` (module docstring); {} when it launches nothing. A later command
    overrides an earlier one's settings."""
    variables: dict[str, str] = {}
    settings: dict = {}
    for line in _lines(text):
        assign = re.fullmatch(r"(?:export\s+)?([A-Za-z_]\w*)=(\S*)", line)
        if assign:
            variables[assign.group(1)] = assign.group(2).strip("\"'")
            continue
        if not (LAUNCHERS.search(line) or LLMC.search(line)) or re.match(r"(?:[$+]\s*)?(?:make|cmake|nvcc|gcc)\b", line):
            continue  # building the binary is no run
        expanded = re.sub(r"\$\{?([A-Za-z_]\w*)\}?", lambda m: variables.get(m.group(1), m.group(0)), line)
        try:
            words = shlex.split(expanded, comments=True)
        except ValueError:  # an unbalanced quote: read what splits on spaces
            words = expanded.split()
        llmc = any(LLMC.search(w) for w in words)
        found: dict = dict(LLMC_DEFAULTS) if llmc else {}
        i = 0
        while i < len(words):
            w = words[i]
            nxt = words[i + 1] if i + 1 < len(words) else None
            if llmc and w in LLMC_FLAGS and nxt is not None:
                name = LLMC_FLAGS[w]
                if name == "model":
                    found.update(_model(nxt))
                else:
                    found[name] = _number(nxt)
                i += 2
                continue
            if w.startswith("--") and len(w) > 2:
                key, eq, value = w[2:].partition("=")
                if not eq and nxt is not None and not nxt.startswith("-"):
                    value, i = nxt, i + 1
                elif not eq:
                    value = "true"
                found[key.replace("-", "_")] = _number(value)
            i += 1
        if found:
            settings.update(found)
    return settings

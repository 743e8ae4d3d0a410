"""How long `bitcheck diagnose` takes on a 12M-parameter checkpoint (the Diagnose issue: < 30 s here).

    .venv/bin/python benchmarks/diagnose_speed.py [--repeats 3]

Builds the `12m` preset (vocab 2048) with seeded weights and times, end to end through the library
entry point `bitcheck.commands.diagnose.diagnose`: a raw state dict (.pt), the same nested with compile
prefixes, and .safetensors (the tensor probes); then every model probe on the 12M model itself
(random-token batches, no tokenizer: the text probes SKIP), as a user model would be probed.
Prints the median of --repeats runs per case.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

from bitcheck.bitnet.config import preset_config
from bitcheck.bitnet.model import BitNet, packed_model
from bitcheck.commands.diagnose import diagnose
from bitcheck.judge.subjects import LogitsOnly, incremental_logits
from probes import REGISTRY, Subject, run_probes


def timed(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.manual_seed(0)
    cfg = preset_config("12m")
    model = BitNet(cfg)
    sd = model.state_dict()
    print(f"12m preset: {model.num_params():,} parameters, torch threads {torch.get_num_threads()}")
    with tempfile.TemporaryDirectory() as d:
        raw, nested, st = Path(d) / "raw.pt", Path(d) / "nested.pt", Path(d) / "model.safetensors"
        torch.save(sd, raw)
        torch.save({"model": {"_orig_mod." + k: v for k, v in sd.items()}}, nested)
        save_file({k: v.contiguous() for k, v in sd.items()}, str(st))
        for name, path in (("state dict .pt", raw), ("nested, compiled prefixes", nested), ("safetensors", st)):
            print(f"{name:28} {timed(lambda: diagnose(path, device='cpu'), args.repeats):6.2f} s  (tensor probes)")
    x = torch.randint(0, cfg.vocab_size, (4, 128), generator=torch.Generator().manual_seed(0))
    subject = Subject(model=LogitsOnly(model), batches=[(x[:, :-1], x[:, 1:])], vocab_size=cfg.vocab_size,
                      fresh_model=lambda: LogitsOnly(BitNet(cfg)), incremental_logits=incremental_logits,
                      inference_model=LogitsOnly(packed_model(model)))
    secs = timed(lambda: run_probes(subject), args.repeats)
    print(f"{'all model probes (12M)':28} {secs:6.2f} s  (text probes SKIP without a tokenizer)")
    for name in REGISTRY:  # where the time goes (one run each)
        t = time.perf_counter()
        r = run_probes(subject, names=[name])[0]
        if r.status != "SKIP":
            print(f"  {name:26} {time.perf_counter() - t:6.2f} s  {r.status}: {r.message[:70]}")


if __name__ == "__main__":
    main()

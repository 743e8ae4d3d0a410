"""The user's code the probes call on their model: one type, however it came in.

    hooks = adapter.hooks(fresh_model=...)        # --model ADAPTER: the adapter module's functions
    hooks = Hooks.from_factory(user_model.extras)  # --model module:factory: the factory's extras
    hooks = Hooks("finish()", sampler=...)         # a Session: finish()'s keyword arguments
    subject.skip.update(hooks.skips())             # the one place a missing hook becomes a SKIP

Every field is optional: a probe whose hook is missing SKIPs saying how to add it, in the words of the
door it came through. Protocols (probes/core.py, Subject): sampler(logits (B, V), temperature, top_k,
generator[, top_p, min_p, repetition_penalty, input_ids]) -> ids (B,); generate(model, idx (1, T), n)
-> ids (1, T + n); incremental_logits(model, idx (B, T)) -> logits (B, T, V) through their KV cache;
inference_model(model) -> their deployment twin; fresh_model() -> an untrained model like theirs.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

# the probe each hook feeds; a probe whose hook is missing cannot check the user's code and SKIPs
PROBE_OF = {"sampler": "sampler", "incremental_logits": "kv_cache_parity", "fresh_model": "loss_at_init",
            "inference_model": "inference_parity"}
# how to add a missing hook, per door
HOW = {"the adapter": "define {hook}() in it to check yours",
       "the factory": "return {{'model': ..., '{hook}': ...}} to check yours",
       "finish()": "pass {hook}= to check yours"}


@dataclass
class Hooks:
    """The user's hooks (None where not given) and the door they came through (for SKIP messages)."""
    door: str  # "the adapter", "the factory" or "finish()"
    sampler: Callable | None = None
    generate: Callable | None = None
    incremental_logits: Callable | None = None
    inference_model: Callable | None = None  # model -> the deployment twin (a factory's twin: lambda _: twin)
    fresh_model: Callable | None = None

    @classmethod
    def from_factory(cls, extras: dict) -> "Hooks":
        """A factory's dict extras (bitcheck/user/factory.py): its inference_model is the twin itself."""
        twin = extras.get("inference_model")
        return cls("the factory", sampler=extras.get("sampler"), generate=extras.get("generate"),
                   incremental_logits=extras.get("incremental_logits"), fresh_model=extras.get("fresh_model"),
                   inference_model=(lambda _model: twin) if twin is not None else None)

    def skips(self) -> dict[str, str]:
        """{probe: why it SKIPs} for every hook the user did not give."""
        return {probe: f"{self.door} gave no {hook}: {HOW[self.door].format(hook=hook)}"
                for hook, probe in PROBE_OF.items() if getattr(self, hook) is None}

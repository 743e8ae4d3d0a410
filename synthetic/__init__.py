"""Synthetic tasks with known right answers: generators, tokenizers and scorers (no torch, no bitcheck)."""

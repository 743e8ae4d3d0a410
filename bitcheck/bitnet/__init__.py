"""The reference: bitcheck's own BitNet b1.58 (model, configs, checkpoints), its trainer, the tasks it
trains on, text data and tokenizers, and the run directory it writes. Imports nothing else of bitcheck
but bitcheck.errors.
"""

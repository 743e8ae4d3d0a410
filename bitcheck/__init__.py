"""bitcheck: diagnostic validation for BitNet b1.58 (ternary-weight) training infrastructure."""
__version__ = "0.1.0"

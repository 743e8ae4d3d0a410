"""`python -m bitcheck ...` (also what `torchrun -m bitcheck` runs)."""
from bitcheck.cli import main

main()

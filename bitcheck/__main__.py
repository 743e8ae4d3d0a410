"""`python -m bitcheck ...` (also what `torchrun -m bitcheck` runs)."""
from bitcheck.commands.cli import main

main()

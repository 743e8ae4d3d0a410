"""The judge: the probes' subjects for bitcheck's models, the decision tree (verdict), `assess` (the one
place probes and the tree run and an exit code is decided), the report and its renderers, and the
planted bugs that prove them. Imports the reference (bitcheck.bitnet), never the user layer or commands.
"""

"""Your code: the adapter and factory doors into the user's model, Hugging Face folders, training logs
(runlog), the probes' subjects of their model, the Session for their own loop, and bisection (retrain
with one component swapped for bitcheck's). Imports the reference and the judge, never commands.
"""

"""The entry points: the CLI and one module per command; each builds its evidence, calls the judge and
returns its Report or Outcome. A command never imports another (the CLI imports each where it runs it).
"""

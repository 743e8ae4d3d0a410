"""Independent checks of a BitNet and its training setup. Imports nothing from `bitcheck`: the code
under test must not supply its own yardstick."""

"""Dataset generators for the mini-JMP experiments (EMT, xTB, ...), seeded and resumable."""

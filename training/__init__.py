"""training: pre-training, fine-tuning and publishing of JMP models (imports jmp_calc, never the reverse)."""

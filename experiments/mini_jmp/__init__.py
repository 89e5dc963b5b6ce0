"""The mini-JMP experiment: data generators (``datagen``), the pre-trained vs from-scratch fine-tuning driver
(``driver``), the quick trainer of the embedded ``jmp-mini-emt`` model (``quickfit``, with its training curve
``jmp-mini-emt.metrics.csv``). Results: examples/results/mini_jmp.md."""

"""The built-in default's tiny Llama and tokenizer, trained on the arithmetic families of `imm.tasks.arith`."""

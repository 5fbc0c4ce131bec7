"""Tasks: data sets with prompts and a judge. The registry of all of them is `imm.tasks.registry`."""

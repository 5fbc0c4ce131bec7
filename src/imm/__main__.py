from imm.cli import entry

entry()

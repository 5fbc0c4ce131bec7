"""`imm` command line: one subcommand per pipeline step, each a module with `configure` and `main`.

Subcommand modules are imported only when used, so `imm --help` does not pay for importing torch.
Every `UserError` becomes one line on stderr and exit code 2; no traceback reaches the user.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
from pathlib import Path

from imm.errors import UserError
from imm.outputs import write_error
from imm.stage_memory import long_lived_frozen

INTERRUPTED = 130  # the shell's code for a command ended by Ctrl-C

# name -> (module with configure(parser) and main(args) -> int, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("imm.loop", "run self-improvement and IMM side by side (the whole loop)"),
    "plan": ("imm.plan", "what a run will ask for before it starts: work, memory, disk, time"),
    "world": ("imm.world.build", "build the built-in task world and its tiny base model"),
    "merge": ("imm.merging.cli", "merge Hugging Face checkpoints (mergekit-style YAML)"),
    "eval": ("imm.evaluation", "evaluate a model on reasoning tasks"),
    "score": ("imm.score", "re-score saved completions with the answer checker"),
    "analyze": ("imm.analysis.cli", "layer-wise update and importance analysis"),
    "convert": ("imm.convert", "write a Hugging Face checkpoint from a GGUF file"),
    "report": ("imm.report.cli", "an HTML report (and Markdown tables) of one run or several seeds"),
    "compare": ("imm.comparison", "merge-back operators side by side in the loop, over seeds, in one report"),
}


def _top_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="imm", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        parser = _top_parser()
        if argv and not argv[0].startswith("-"):
            parser.print_usage(sys.stderr)
            print(f"imm: error: unknown command {argv[0]!r}; choose one of {', '.join(COMMANDS)}", file=sys.stderr)
            return 2
        parser.parse_args(argv)  # prints help / handles --help
        parser.print_help()
        return 0
    module_name, help_text = COMMANDS[argv[0]]
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(prog=f"imm {argv[0]}", description=help_text)
    module.configure(parser)
    args = parser.parse_args(argv[1:])
    try:
        with long_lived_frozen():
            return int(module.main(args) or 0)
    except UserError as err:
        print(f"imm {argv[0]}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"imm {argv[0]}: interrupted; re-run the same command to resume", file=sys.stderr, flush=True)
        return INTERRUPTED
    except OSError as err:  # a full disk met outside imm.outputs' writers (a log line, a library's cache)
        line = write_error(err, Path(err.filename or "."))
        if line is None:
            raise
        print(f"imm {argv[0]}: error: {line}", file=sys.stderr)
        return 2


def entry() -> None:
    """The `imm` executable. After Ctrl-C everything is already whole on disk (every write is atomic), so
    the process ends at once with 130: an interpreter shutdown racing the interrupted library threads
    and worker processes could otherwise end it by the signal instead."""
    code = main()
    if code == INTERRUPTED:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the exit short either
        sys.stdout.flush()
        os._exit(INTERRUPTED)
    sys.exit(code)

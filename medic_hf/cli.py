"""The `medic-hf` command line: one subcommand per step, from preparing data to labelling images."""

import sys

from . import evaluation, export, hub, prediction, prepare, training
from .errors import MedicDataError, MedicUsageError


# Errors in the user's input or environment: shown as one message, without a traceback.
# OSError covers what transformers raises for a model folder or Hub id it cannot find or reach.
USER_ERRORS = (MedicDataError, MedicUsageError, OSError)


COMMANDS = {
    "train": (training.main, "Fine-tune a shared backbone with one head per MEDIC task."),
    "evaluate": (evaluation.main, "Score a trained model on a MEDIC split, per task."),
    "predict": (prediction.main, "Label image files or folders, one JSON object per image."),
    "prepare": (prepare.prepare_main, "Write MEDIC as parquet shards with a dataset card."),
    "push-dataset": (prepare.push_dataset_main, "Upload a prepared MEDIC folder to a Hub dataset repo."),
    "export": (export.main, "Write a trained model as ONNX, one logits output per task."),
    "push": (hub.main, "Upload a trained model folder with its model card to a Hub model repo."),
}

USAGE = "usage: medic-hf {" + ",".join(COMMANDS) + "} [options]\n\n" + "\n".join(
    f"  {name:<13} {help_text}" for name, (_, help_text) in COMMANDS.items()
) + "\n\nRun `medic-hf COMMAND --help` for a command's options."


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return
    command, *rest = argv
    if command not in COMMANDS:
        sys.exit(f"medic-hf: unknown command {command!r}.\n\n{USAGE}")
    try:
        COMMANDS[command][0](rest)
    except USER_ERRORS as error:
        sys.exit(f"medic-hf {command}: error: {error}")


if __name__ == "__main__":
    main()

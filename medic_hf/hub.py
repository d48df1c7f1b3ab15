"""`medic-hf push`: upload a trained model folder to a Hub model repo, with a card written for that repo."""

import argparse
import logging
import shutil
import tempfile
from pathlib import Path

from huggingface_hub import HfApi

from .errors import MedicUsageError
from .model_card import METRICS_FILE, TRAINING_FILE, write_model_card


logger = logging.getLogger(__name__)

# Files of a training run that do not belong in the model repo: checkpoints, logs, optimizer and trainer state.
EXCLUDED_PATTERNS = ("checkpoint-*", "runs", "wandb", "*.bin", "*.pt", "*.pth", ".*")


def push_model_folder(
    folder: str | Path,
    repo_id: str,
    *,
    token: str | None = None,
    private: bool | None = None,
    revision: str | None = None,
    commit_message: str = "Upload MEDIC multi-task model",
) -> str:
    """Upload a model folder written by `medic-hf train` to the Hub in one commit, and return the commit URL.

    The folder is copied to a temporary folder, where the card is written again with `repo_id` in its examples
    (when the folder has `medic_metrics.json` and `medic_training.json`), then `upload_folder` sends it.
    Checkpoints, logs and pickled files (`*.bin`, `*.pt`) are left out.

    Args:
        folder: the model folder: `config.json`, `model.safetensors`, the model code and the image processor.
        repo_id: the Hub model repo, `name` or `namespace/name`. It is created if it does not exist.
        token: the Hub token. Defaults to the one saved by `hf auth login` or `HF_TOKEN`.
        private: make a new repo private. Leaves an existing repo's visibility as it is.
        revision: the branch to commit to, created if needed. Defaults to `main`.
        commit_message: the commit's summary line.

    Raises:
        FileNotFoundError: if `folder` has no `config.json` or `model.safetensors`.
    """
    folder = Path(folder)
    missing = [name for name in ("config.json", "model.safetensors") if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"Cannot push {folder}: {', '.join(missing)} not found. Give the output folder of `medic-hf train`."
        )

    api = HfApi(token=token)
    repo_id = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model").repo_id
    if revision is not None:
        api.create_branch(repo_id, branch=revision, exist_ok=True, repo_type="model")

    with tempfile.TemporaryDirectory(prefix="medic-push-") as staging:
        staging = Path(staging)
        shutil.copytree(folder, staging, dirs_exist_ok=True, ignore=shutil.ignore_patterns(*EXCLUDED_PATTERNS))
        if (folder / METRICS_FILE).is_file() and (folder / TRAINING_FILE).is_file():
            write_model_card(folder, model_id=repo_id, output_folder=staging)
        else:
            logger.warning(
                f"{folder} has no {METRICS_FILE} or {TRAINING_FILE}, so its README.md is uploaded as it is, with "
                "the local folder in its examples."
            )
        commit = api.upload_folder(
            repo_id=repo_id,
            folder_path=staging,
            repo_type="model",
            revision=revision,
            commit_message=commit_message,
        )
    logger.info(f"Uploaded {folder} to https://huggingface.co/{repo_id}")
    return commit.commit_url


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="medic-hf push",
        description="Upload a model folder written by `medic-hf train` to a Hub model repo, with its card.",
    )
    parser.add_argument("--model", required=True, help="The output folder of `medic-hf train`.")
    parser.add_argument(
        "--repo_id", required=True, help="Hub model repo, `name` or `namespace/name`; created if needed."
    )
    parser.add_argument("--token", default=None, help="Hub token (default: the saved login or HF_TOKEN).")
    parser.add_argument("--private", action="store_true", help="Create the repo as private if it does not exist.")
    parser.add_argument("--revision", default=None, help="Branch to commit to, created if needed (default: main).")
    parser.add_argument("--commit_message", default="Upload MEDIC multi-task model", help="Commit summary line.")
    args = parser.parse_args(argv)

    logging.basicConfig(format="%(levelname)s - %(name)s - %(message)s", level=logging.INFO)
    if not Path(args.model).is_dir():
        raise MedicUsageError(
            f"Invalid `--model {args.model}`: no such folder. Give the output folder of `medic-hf train`."
        )
    url = push_model_folder(
        args.model,
        args.repo_id,
        token=args.token,
        private=args.private or None,
        revision=args.revision,
        commit_message=args.commit_message,
    )
    print(url)

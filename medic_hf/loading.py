"""`load_medic`: MEDIC as a `datasets.DatasetDict` in one call."""

import hashlib
from pathlib import Path

import datasets

from .builder import SPLIT_FILES, MedicBuilder
from .errors import MedicDataError


def load_medic(
    data_dir: str | None = None,
    *,
    split: str | None = None,
    cache_dir: str | None = None,
    num_proc: int | None = None,
    download_mode: str | None = None,
) -> datasets.DatasetDict | datasets.Dataset:
    """Load MEDIC with the splits `train`, `validation` and `test`.

    Args:
        data_dir (`str`, *optional*):
            A folder laid out like the MEDIC archive (the three `MEDIC_*.tsv` files at any depth, with
            `image_path` relative to their folder), or the `MEDIC.tar.gz` archive. When `None`, the archive is
            downloaded from the MEDIC home page.
        split (`str`, *optional*):
            Return only this split as a `Dataset`.
        cache_dir (`str`, *optional*):
            Where `datasets` keeps the prepared Arrow files. Defaults to the `datasets` cache.
        num_proc (`int`, *optional*):
            Processes that check the images while preparing.
        download_mode (`str`, *optional*):
            `"force_redownload"` rebuilds the cache entry.

    Returns:
        `DatasetDict` (or `Dataset` when `split` is given) with the columns `image_id`, `event_name`,
        `image_path`, `image` and one `ClassLabel` per task, where -1 marks a missing label.

    Raises:
        MedicDataError: a TSV row is invalid. The message names the file, line and value, and the fix.
        FileNotFoundError: `data_dir` does not exist or contains no MEDIC TSV files.
        ConnectionError: the archive could not be downloaded.

    Example:

    ```python
    >>> from medic_hf import load_medic
    >>> medic = load_medic("/data/MEDIC")
    >>> medic["train"].features["disaster_types"].names[:3]
    ['earthquake', 'fire', 'flood']
    ```
    """
    config_kwargs = {}
    if data_dir is not None:
        data_dir = str(Path(data_dir).expanduser().resolve())
        config_kwargs["source_fingerprint"] = fingerprint_source(Path(data_dir))
    builder = MedicBuilder(dataset_name="medic", data_dir=data_dir, cache_dir=cache_dir, **config_kwargs)
    try:
        builder.download_and_prepare(num_proc=num_proc, download_mode=download_mode)
    except datasets.exceptions.DatasetGenerationError as error:
        # The builder checks images while it writes, so `datasets` wraps our error. Surface it as it was.
        if isinstance(error.__cause__, MedicDataError):
            raise error.__cause__ from None
        raise
    return builder.as_dataset(split=split)


def fingerprint_source(path: Path) -> str:
    """Digest the TSV files' (or the archive's) paths, sizes and modification times.

    The prepared cache stores image paths, not a digest of every image, so replacing an image file in place
    with the same TSV files reuses the cache. Use `download_mode="force_redownload"` after such a change.
    """
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for name in SPLIT_FILES.values() for p in path.rglob(name))
    for file in files:
        stat = file.stat()
        digest.update(f"{file}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]

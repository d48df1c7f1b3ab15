"""The MEDIC tasks and their class names, the single source for datasets, configs and metrics.

Class names are the exact strings of the MEDIC TSV files. Each task numbers its classes in sorted
(alphabetical) order, as the MEDIC authors' training code does, so index ``i`` means the same class in
every split and every copy of the data that is loaded through this package.
"""

TASK_LABELS: dict[str, list[str]] = {
    "damage_severity": ["little_or_none", "mild", "severe"],
    "informative": ["informative", "not_informative"],
    "humanitarian": [
        "affected_injured_or_dead_people",
        "infrastructure_and_utility_damage",
        "not_humanitarian",
        "rescue_volunteering_or_donation_effort",
    ],
    "disaster_types": [
        "earthquake",
        "fire",
        "flood",
        "hurricane",
        "landslide",
        "not_disaster",
        "other_disaster",
    ],
}

TASKS: list[str] = list(TASK_LABELS)

# Index that marks an example without a label for a task. PyTorch's cross-entropy skips it as `ignore_index`.
MISSING_LABEL = -1

TSV_COLUMNS: list[str] = ["image_id", "event_name", "image_path", *TASKS]

SPLIT_FILES: dict[str, str] = {
    "train": "MEDIC_train.tsv",
    "validation": "MEDIC_dev.tsv",
    "test": "MEDIC_test.tsv",
}


def label_column(task: str) -> str:
    """Return the name of the model's `forward` argument, and of the training batch key, for a task's labels."""
    return f"{task}_labels"

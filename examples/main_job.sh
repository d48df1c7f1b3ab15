#!/usr/bin/env bash
# The main job end to end: fine-tune, evaluate on test, and label a few images with the saved model.
#
#   bash examples/main_job.sh                                 # official archive (downloaded), ResNet-18 from the Hub
#   bash examples/main_job.sh /data/MEDIC                     # a local MEDIC folder or MEDIC.tar.gz
#   bash examples/main_job.sh ../shared/real-photos tiny-vit  # a local folder and a tiny random ViT, on a CPU
#
# Extra `medic-hf train` options can follow in TRAIN_ARGS, e.g. TRAIN_ARGS="--num_train_epochs 10".
set -euo pipefail

data_dir=${1:-}
backbone=${2:-microsoft/resnet-18}
output_dir=${OUTPUT_DIR:-medic-model}

# `tiny-vit` and `tiny-resnet` name a small random backbone that is made on the spot, for offline trials.
if [[ "$backbone" == tiny-vit || "$backbone" == tiny-resnet ]] && [[ ! -d "$backbone" ]]; then
    python "$(dirname "$0")/make_tiny_backbone.py" "$backbone" --arch "${backbone#tiny-}"
fi

data_args=()
if [[ -n "$data_dir" ]]; then
    data_args=(--data_dir "$data_dir")
fi

# shellcheck disable=SC2086  # TRAIN_ARGS is split into options on purpose
medic-hf train "${data_args[@]}" --backbone "$backbone" --output_dir "$output_dir" \
    --num_train_epochs "${EPOCHS:-2}" --per_device_train_batch_size 16 ${TRAIN_ARGS:-}

medic-hf evaluate --model "$output_dir" "${data_args[@]}" --split test

# Label the first eight test images of a local folder (images the model did not train on), one JSON line each.
test_tsv=$( [[ -n "$data_dir" && -d "$data_dir" ]] && find "$data_dir" -name MEDIC_test.tsv | head -n 1 || true)
if [[ -n "$test_tsv" ]]; then
    mapfile -t sample < <(tail -n +2 "$test_tsv" | head -n 8 | cut -f 3 | sed "s|^|$(dirname "$test_tsv")/|")
    medic-hf predict --model "$output_dir" "${sample[@]}"
fi
echo "Done: the model, its card (README.md) and medic_metrics.json are in $output_dir"

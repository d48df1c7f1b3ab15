"""Inference cost of one four-head MEDIC model against four single-task models of the same backbone.

The multi-task model runs the backbone once per batch and feeds its four heads. The baseline runs four
models, one per task, on the same batch. Both get the same random 3x224x224 batches in this process, and the
script alternates the two in each repetition so that both see the same machine load. It prints images per
second (all four tasks labelled), the ratio, the parameter counts and the memory of each.

    python benchmarks/multitask_vs_single.py --backbone resnet-18 --batch_size 16 --repetitions 7

Memory: on a GPU, the peak of `torch.cuda.max_memory_allocated` while one configuration runs. On a CPU, the
peak resident set size (VmHWM) of a fresh process that builds one configuration and runs two batches, less
the resident size of that process before it built the models (the Python, torch and transformers baseline).
"""

import argparse
import json
import multiprocessing
import os
import platform
import statistics
import sys
import time

import torch
from transformers import AutoConfig, ResNetConfig, ViTConfig

from medic_hf import TASKS, MedicConfig, MedicForMultiTaskImageClassification


# Architectures built from their published configs, with random weights: speed does not depend on the weights.
BACKBONES = {
    "resnet-18": lambda: ResNetConfig(
        embedding_size=64, hidden_sizes=[64, 128, 256, 512], depths=[2, 2, 2, 2], layer_type="basic"
    ),
    "resnet-50": lambda: ResNetConfig(
        embedding_size=64, hidden_sizes=[256, 512, 1024, 2048], depths=[3, 4, 6, 3], layer_type="bottleneck"
    ),
    "vit-base": lambda: ViTConfig(image_size=224, patch_size=16),
}


def backbone_config(name: str):
    """Return a known architecture's config, or load the config of a local folder or Hub id."""
    if name in BACKBONES:
        return BACKBONES[name]()
    return AutoConfig.from_pretrained(name)


def build_models(name: str, multitask: bool, device: torch.device) -> list[MedicForMultiTaskImageClassification]:
    """Build the four-head model, or one single-task model per task, in eval mode on `device`."""
    torch.manual_seed(0)
    task_sets = [TASKS] if multitask else [[task] for task in TASKS]
    return [
        MedicForMultiTaskImageClassification(MedicConfig(backbone_config=backbone_config(name), tasks=tasks))
        .to(device)
        .eval()
        for tasks in task_sets
    ]


def count_parameters(models) -> int:
    return sum(parameter.numel() for model in models for parameter in model.parameters())


@torch.inference_mode()
def run_batch(models, pixel_values: torch.Tensor) -> None:
    """Label one batch for all four tasks: one forward per model."""
    for model in models:
        model(pixel_values=pixel_values)
    if pixel_values.is_cuda:
        torch.cuda.synchronize()


def time_batch(models, pixel_values: torch.Tensor) -> float:
    start = time.perf_counter()
    run_batch(models, pixel_values)
    return time.perf_counter() - start


def measure_memory(name: str, multitask: bool, batch_size: int, device_name: str, queue) -> None:
    """Child process: build one configuration, run two batches and report its memory in MiB."""
    device = torch.device(device_name)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    baseline_kib = read_status_kib("VmRSS")
    models = build_models(name, multitask, device)
    pixel_values = torch.randn(batch_size, 3, 224, 224, device=device)
    for _ in range(2):
        run_batch(models, pixel_values)
    if device.type == "cuda":
        queue.put(torch.cuda.max_memory_allocated() / 2**20)
    else:
        queue.put((read_status_kib("VmHWM") - baseline_kib) / 1024)


def read_status_kib(field: str) -> int:
    """Read a memory figure of this process from /proc/self/status (Linux): VmRSS now, or VmHWM, its peak.

    `getrusage`'s `ru_maxrss` gave the same figure for both configurations, because Linux keeps the parent's
    peak through the fork and exec that start the child.
    """
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not found in /proc/self/status: the memory figures need Linux.")


def memory_in_fresh_process(name: str, multitask: bool, batch_size: int, device: str) -> float:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=measure_memory, args=(name, multitask, batch_size, device, queue))
    process.start()
    value = queue.get(timeout=1800)
    process.join()
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--backbone",
        default="resnet-18",
        help=f"One of {', '.join(BACKBONES)} (random weights), or a local folder or Hub id whose config to use.",
    )
    parser.add_argument("--batch_size", type=int, default=16, help="Images per batch (default: 16).")
    parser.add_argument("--repetitions", type=int, default=7, help="Timed batches per configuration (default: 7).")
    parser.add_argument("--warmup", type=int, default=2, help="Untimed batches per configuration first (default: 2).")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available).")
    parser.add_argument(
        "--skip_memory", action="store_true", help="Skip the memory measurement (two extra processes)."
    )
    parser.add_argument("--json", default=None, help="Also write the figures to this JSON file.")
    args = parser.parse_args()
    if args.batch_size < 1 or args.repetitions < 1:
        parser.error("--batch_size and --repetitions must be positive")

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    multitask = build_models(args.backbone, True, device)
    single = build_models(args.backbone, False, device)
    pixel_values = torch.randn(args.batch_size, 3, 224, 224, generator=torch.Generator().manual_seed(0)).to(device)

    for _ in range(args.warmup):
        run_batch(multitask, pixel_values)
        run_batch(single, pixel_values)
    # Alternate the two in each repetition, so that both see the same machine load.
    multitask_times, single_times = [], []
    for _ in range(args.repetitions):
        multitask_times.append(time_batch(multitask, pixel_values))
        single_times.append(time_batch(single, pixel_values))

    results = {
        "backbone": args.backbone,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name(),
        "torch_threads": torch.get_num_threads(),
        "batch_size": args.batch_size,
        "repetitions": args.repetitions,
        "multitask_images_per_second": args.batch_size / statistics.median(multitask_times),
        "single_task_images_per_second": args.batch_size / statistics.median(single_times),
        "multitask_parameters": count_parameters(multitask),
        "single_task_parameters": count_parameters(single),
    }
    results["speedup"] = results["multitask_images_per_second"] / results["single_task_images_per_second"]
    results["parameter_ratio"] = results["single_task_parameters"] / results["multitask_parameters"]
    del multitask, single
    if not args.skip_memory:
        results["multitask_memory_mib"] = memory_in_fresh_process(args.backbone, True, args.batch_size, str(device))
        results["single_task_memory_mib"] = memory_in_fresh_process(args.backbone, False, args.batch_size, str(device))
        results["memory_ratio"] = results["single_task_memory_mib"] / results["multitask_memory_mib"]

    print_report(results)
    if args.json:
        with open(args.json, "w") as file:
            json.dump(results, file, indent=2)


def cpu_name() -> str:
    """Return the CPU model and core count, from /proc/cpuinfo where it exists."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            model = next(line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{model}, {os.cpu_count()} cores"


def print_report(results: dict) -> None:
    memory_label = "peak GPU memory" if results["device"].startswith("cuda") else "peak RSS increase"
    print(
        f"backbone {results['backbone']}, device {results['device']} ({results['device_name']}, "
        f"{results['torch_threads']} torch threads), batch {results['batch_size']}, "
        f"median of {results['repetitions']} batches, python {sys.version.split()[0]}, torch {torch.__version__}"
    )
    print(f"{'':<28}{'images/s (4 tasks)':>20}{'parameters':>14}{memory_label + ' (MiB)':>28}")
    for label, key in (("one model, four heads", "multitask"), ("four single-task models", "single_task")):
        memory = results.get(f"{key}_memory_mib")
        memory_text = f"{memory:.0f}" if memory is not None else "-"
        print(
            f"{label:<28}{results[f'{key}_images_per_second']:>20.1f}"
            f"{results[f'{key}_parameters']:>14,}{memory_text:>28}"
        )
    print(f"speed-up of the four-head model: {results['speedup']:.2f}x (the ceiling is 4x)")
    print(f"parameters of four models / one: {results['parameter_ratio']:.2f}x")
    if "memory_ratio" in results:
        print(f"memory of four models / one: {results['memory_ratio']:.2f}x")


if __name__ == "__main__":
    main()

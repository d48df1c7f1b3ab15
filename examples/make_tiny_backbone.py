"""Save a tiny, randomly initialised vision backbone and its image processor to a folder.

Useful for trying the whole `medic-hf` pipeline on a CPU in a minute: the model learns little, but every
step (data, training, evaluation, model card, prediction) runs for real.

    python examples/make_tiny_backbone.py tiny-vit
    python examples/make_tiny_backbone.py tiny-resnet --arch resnet
"""

import argparse

from transformers import ConvNextImageProcessor, ResNetConfig, ResNetModel, ViTConfig, ViTImageProcessor, ViTModel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("output_dir", help="Folder to save the backbone to.")
    parser.add_argument("--arch", choices=("vit", "resnet"), default="vit", help="Architecture (default: vit).")
    parser.add_argument("--image_size", type=int, default=64, help="Input side length in pixels (default: 64).")
    args = parser.parse_args()

    if args.arch == "vit":
        config = ViTConfig(
            image_size=args.image_size,
            patch_size=8,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
        )
        model = ViTModel(config, add_pooling_layer=False)
        processor = ViTImageProcessor(size={"height": args.image_size, "width": args.image_size})
    else:
        config = ResNetConfig(embedding_size=16, hidden_sizes=[16, 32], depths=[1, 1], layer_type="basic")
        model = ResNetModel(config)
        processor = ConvNextImageProcessor(size={"shortest_edge": args.image_size}, crop_pct=1.0)

    model.save_pretrained(args.output_dir)
    processor.save_pretrained(args.output_dir)
    print(f"Saved a tiny random {args.arch} backbone to {args.output_dir}")


if __name__ == "__main__":
    main()

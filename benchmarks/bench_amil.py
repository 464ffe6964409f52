"""A-MIL speed: building a bag, one training epoch (data vs model), padded batches vs one bag per step.

    python benchmarks/bench_amil.py [--bags 100] [--threads 2]

References measured in the same run:
- a bag (400 patches, 28 x 28, unfold) against a copy of the same 448 x 700 crop;
- an augmented bag (turns + stain, ``augment_bag``) against building the bag;
- an epoch over N bags: seconds building (and, augmented, transforming) bags vs seconds in the model;
- a forward + backward pass with the attention scores smoothed over the grid (Sm, 10 steps) against the
  same pass without;
- batches of 4 padded bags against one bag per step: examples/s ratio, checked to
  give the same loss (one forward/backward over the same bags, same weights).
Targets (issue 12): a bag in under 5 ms; an epoch not dominated by data loading.
"""

import argparse

import numpy as np
import torch
from timing import median_seconds

from course_lib.amil.data import augment_bag, grid_shape, image_to_bag, pad_bags
from course_lib.amil.model import AttentionMIL, bag_nll
from course_lib.amil.train import ImageBags, TrainSettings, train_amil


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bags", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (args.bags, 460, 700, 3), dtype=np.uint8)

    bag_seconds = median_seconds(lambda: image_to_bag(images[0]), repeats=20)
    copy_seconds = median_seconds(lambda: np.ascontiguousarray(images[0][6:454]).astype(np.float32), repeats=20)
    print(f"bag of 400 patches: {bag_seconds * 1e3:.2f} ms (target < 5 ms); "
          f"{bag_seconds / copy_seconds:.1f}x a float copy of the crop")

    bag = image_to_bag(images[0])
    augment_seconds = median_seconds(lambda: augment_bag(bag, seed=0), repeats=20)
    print(f"augmenting a bag (8 patch symmetries + stain): {augment_seconds * 1e3:.2f} ms, "
          f"{augment_seconds / bag_seconds:.1f}x building it")

    labels = np.arange(args.bags) % 2
    for augment in (False, True):
        history = train_amil(AttentionMIL(), ImageBags(images), labels,
                             TrainSettings(epochs=1, threads=args.threads, augment=augment), log=None)
        total = history["data_seconds"] + history["model_seconds"]
        print(f"epoch over {args.bags} bags, one per step{', augmented' if augment else ''}: {total:.1f} s, of which "
              f"building bags {history['data_seconds']:.1f} s ({history['data_seconds'] / total:.1%})")

    torch.manual_seed(0)
    plain, smoothed = AttentionMIL(), AttentionMIL(grid=grid_shape(), attention_smoothing=0.5)
    smoothed.load_state_dict(plain.state_dict())

    def step(model):
        model.zero_grad()
        model(bag).logit.sum().backward()

    plain_seconds = median_seconds(lambda: step(plain), repeats=10)
    smoothed_seconds = median_seconds(lambda: step(smoothed), repeats=10)
    print(f"forward + backward of one bag: {plain_seconds * 1e3:.1f} ms, with the scores smoothed over the grid "
          f"{smoothed_seconds * 1e3:.1f} ms ({smoothed_seconds / plain_seconds:.2f}x)")

    bags = [image_to_bag(images[k]) for k in range(min(8, args.bags))]
    targets = torch.tensor(labels[:len(bags)], dtype=torch.float32)
    torch.manual_seed(0)
    model = AttentionMIL()

    def one_per_step():
        total_loss = 0.0
        for bag, y in zip(bags, targets):
            model.zero_grad()
            loss = bag_nll(model(bag).probability, y[None]).sum()
            loss.backward()
            total_loss += float(loss.detach())
        return total_loss / len(bags)

    def batched(size=4):
        total_loss = 0.0
        for start in range(0, len(bags), size):
            model.zero_grad()
            padded, mask = pad_bags(bags[start:start + size])
            losses = bag_nll(model(padded, mask).probability, targets[start:start + size])
            losses.mean().backward()
            total_loss += float(losses.sum())
        return total_loss / len(bags)

    difference = abs(one_per_step() - batched())
    single = median_seconds(one_per_step, repeats=3)
    batch = median_seconds(batched, repeats=3)
    print(f"{len(bags)} bags forward+backward: one per step {len(bags) / single:.1f} bags/s, "
          f"padded batches of 4 {len(bags) / batch:.1f} bags/s (ratio {single / batch:.2f}x), "
          f"mean loss difference {difference:.1e}")


if __name__ == "__main__":
    main()

"""Why a decoding step's attention costs what it does: one step's attention over a batch's KV cache, by layout.

    python benchmarks/attention_layout.py [--rows 128] [--length 80] [--threads 1]

The shape is the built-in model's decoding step (4 heads of 32, 8 layers, one query per row), with the KV
cache of `--length` positions. Each row times `scaled_dot_product_attention` once per layer over eight
layers' caches (so they come from memory, not from the CPU's caches, as in a real step), in microseconds per
layer: the keys packed without room, then with room of a few positions between one head's keys and the
next (the decoding loop keeps at most 3), and room made once for the prompt and 96 new tokens. `equal` says whether the output equals the packed layout's bit for bit.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from _log import append_section

HEADS, HEAD_DIM, LAYERS = 4, 32, 8


def per_layer_us(q, mask, caches, length: int, repeats: int = 20) -> float:
    def one_step():
        for k, v in caches:
            F.scaled_dot_product_attention(q, k[:, :, :length], v[:, :, :length], attn_mask=mask)

    one_step()
    started = time.perf_counter()
    for _ in range(repeats):
        one_step()
    return (time.perf_counter() - started) / repeats / len(caches) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=128)
    parser.add_argument("--length", type=int, default=80)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rows, length = args.rows, args.length
    q = torch.randn(rows, HEADS, 1, HEAD_DIM)
    mask = torch.ones(rows, 1, 1, length, dtype=torch.bool)
    mask[: rows // 2, ..., :3] = False  # left padding in half the rows
    layouts = {"packed (no room)": length, "room of 1 position": length + 1, "room of 2 positions": length + 2,
               "room of 3 positions (the decoding loop's most)": length + 3, "room of 4 positions": length + 4,
               "room of 8 positions": length + 8, "room of 16 positions": length + 16,
               "room for the prompt and 96 new tokens (the loop's layout before)": length + 71}
    caches = {name: [(torch.randn(rows, HEADS, size, HEAD_DIM), torch.randn(rows, HEADS, size, HEAD_DIM))
                     for _ in range(LAYERS)] for name, size in layouts.items()}
    packed = caches["packed (no room)"]
    reference = F.scaled_dot_product_attention(q, packed[0][0], packed[0][1], attn_mask=mask)
    table = ["| KV cache layout | µs per layer | vs packed | equal to packed |", "|---|---|---|---|"]
    base = per_layer_us(q, mask, packed, length)
    for name, size in layouts.items():
        room = caches[name]
        for (k, v), (pk, pv) in zip(room, packed):  # the same keys and values, in this layout
            k[:, :, :length], v[:, :, :length] = pk, pv
        us = per_layer_us(q, mask, room, length)
        out = F.scaled_dot_product_attention(q, room[0][0][:, :, :length], room[0][1][:, :, :length], attn_mask=mask)
        table.append(f"| {name} | {us:,.0f} | {us / base:.2f} | {torch.equal(out, reference)} |")
    streamed = []
    for k, v in caches["room for the prompt and 96 new tokens (the loop's layout before)"]:
        started = time.perf_counter()
        k[:, :, :length].sum(), v[:, :, :length].sum()
        streamed.append(time.perf_counter() - started)
    table.append(f"| reading the same keys and values once (sum) | {sum(streamed) / len(streamed) * 1e6:,.0f} | | |")
    note = (f"{rows} rows × {HEADS} heads × {length} positions × {HEAD_DIM}, float32, {LAYERS} layers' caches "
            f"({LAYERS * 2 * rows * HEADS * length * HEAD_DIM * 4 / 2**20:.0f} MiB of keys and values), one query "
            f"per row, torch threads {args.threads}.")
    append_section("Decoding attention by KV cache layout", table, note)


if __name__ == "__main__":
    main()

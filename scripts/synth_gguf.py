#!/usr/bin/python3
"""Write a random-weight F16 GGUF of a published model shape, for benchmarks
against llama.cpp on the same file (quantize it with llama-quantize).

usage: PYTHONPATH=LLAMA_CPP/gguf-py scripts/synth_gguf.py SHAPE OUT.gguf VOCAB.gguf
SHAPE: llama3.2-1b (llama: RoPE base 500000 with Llama-3.1 frequency factors
in rope_freqs.weight, tied embeddings) | qwen2.5-0.5b (qwen2: q/k/v biases,
tied embeddings). VOCAB.gguf gives the tokenizer.* keys and the vocabulary
size (../shared/data/tokenizers/ggml-vocab-llama-bpe.gguf for Llama-3,
ggml-vocab-qwen2.gguf for Qwen). Weights are N(0, 0.02) views of one random
buffer (norms 1, biases N(0, 0.02)), so memory stays near the file's size.
Needs python3-numpy and llama.cpp's gguf-py.
"""
import math
import sys

import gguf
import numpy as np

SHAPES = {
    "llama3.2-1b": dict(arch="llama", dim=2048, hidden=8192, layers=16, heads=32, kv=8,
                        ctx=131072, base=500000.0, eps=1e-5, llama3_scaling=True),
    "qwen2.5-0.5b": dict(arch="qwen2", dim=896, hidden=4864, layers=24, heads=14, kv=2,
                         ctx=32768, base=1000000.0, eps=1e-6, qkv_bias=True),
}


def llama3_rope_factors(head_dim, base, factor=32.0, low=1.0, high=4.0, original_ctx=8192):
    """Llama-3.1's per-frequency RoPE divisors, as llama.cpp's converter writes them."""
    out = []
    for i in range(0, head_dim, 2):
        wavelen = 2 * math.pi * base ** (i / head_dim)
        if wavelen < original_ctx / high:
            out.append(1.0)
        elif wavelen > original_ctx / low:
            out.append(factor)
        else:
            smooth = (original_ctx / wavelen - low) / (high - low)
            out.append(1.0 / ((1 - smooth) / factor + smooth))
    return np.array(out, dtype=np.float32)


def copy_vocabulary(writer, path):
    reader = gguf.GGUFReader(path)
    for name, f in reader.fields.items():
        if not name.startswith("tokenizer."):
            continue
        t = f.types[0]
        if t == gguf.GGUFValueType.ARRAY:
            if f.types[1] == gguf.GGUFValueType.STRING:
                writer.add_array(name, [bytes(f.parts[i]).decode("utf-8", "replace") for i in f.data])
            else:
                writer.add_array(name, [f.parts[i].tolist()[0] for i in f.data])
        elif t == gguf.GGUFValueType.STRING:
            writer.add_string(name, bytes(f.parts[f.data[0]]).decode())
        elif t == gguf.GGUFValueType.UINT32:
            writer.add_uint32(name, int(f.parts[f.data[0]][0]))
        elif t == gguf.GGUFValueType.INT32:
            writer.add_int32(name, int(f.parts[f.data[0]][0]))
        elif t == gguf.GGUFValueType.BOOL:
            writer.add_bool(name, bool(f.parts[f.data[0]][0]))
        elif t == gguf.GGUFValueType.FLOAT32:
            writer.add_float32(name, float(f.parts[f.data[0]][0]))
    return len(reader.fields["tokenizer.ggml.tokens"].data)


def main():
    shape, out, vocab_path = sys.argv[1:4]
    s = SHAPES[shape]
    rng = np.random.default_rng(0)
    pool = (rng.standard_normal(64 << 20) * 0.02).astype(np.float16)

    def weight(rows, cols, seed):
        n = rows * cols
        if n > pool.size:
            return np.resize(pool, n).reshape(rows, cols)
        off = (seed * 7919 * 4096) % (pool.size - n)
        return pool[off:off + n].reshape(rows, cols)

    def bias(n, seed):
        return (np.random.default_rng(seed).standard_normal(n) * 0.02).astype(np.float32)

    d, h, hd = s["dim"], s["hidden"], s["dim"] // s["heads"]
    kvd = s["kv"] * hd
    w = gguf.GGUFWriter(out, s["arch"])
    w.add_name(f"synth-{shape}")
    w.add_context_length(s["ctx"])
    w.add_embedding_length(d)
    w.add_block_count(s["layers"])
    w.add_feed_forward_length(h)
    w.add_rope_dimension_count(hd)
    w.add_head_count(s["heads"])
    w.add_head_count_kv(s["kv"])
    w.add_layer_norm_rms_eps(s["eps"])
    w.add_rope_freq_base(s["base"])
    w.add_file_type(1)  # MOSTLY_F16
    vocab = copy_vocabulary(w, vocab_path)

    seed = 1
    w.add_tensor("token_embd.weight", weight(vocab, d, seed))
    if s.get("llama3_scaling"):
        w.add_tensor("rope_freqs.weight", llama3_rope_factors(hd, s["base"]))
    for layer in range(s["layers"]):
        p = f"blk.{layer}."
        w.add_tensor(p + "attn_norm.weight", np.ones(d, np.float32))
        shapes = {"attn_q": (d, d), "attn_k": (kvd, d), "attn_v": (kvd, d), "attn_output": (d, d),
                  "ffn_gate": (h, d), "ffn_up": (h, d), "ffn_down": (d, h)}
        for name, (rows, cols) in shapes.items():
            seed += 1
            w.add_tensor(p + name + ".weight", weight(rows, cols, seed))
            if s.get("qkv_bias") and name in ("attn_q", "attn_k", "attn_v"):
                w.add_tensor(p + name + ".bias", bias(rows, seed))
        w.add_tensor(p + "ffn_norm.weight", np.ones(d, np.float32))
    w.add_tensor("output_norm.weight", np.ones(d, np.float32))
    # No output.weight: the classifier is token_embd (tied, as in both models).
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file(progress=False)
    w.close()
    print("wrote", out)


if __name__ == "__main__":
    main()

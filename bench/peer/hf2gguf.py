#!/usr/bin/env python3
"""Minimal HF-Llama (F32 safetensors) -> GGUF v3 converter, and PEFT LoRA -> GGUF LoRA adapter, for the peer
benchmark (bench/peer/run.ts converts the project's random checkpoints with it; python3 + numpy).

  python3 bench/peer/hf2gguf.py model HF_DIR OUT.gguf {f32,f16,q8_0,q4_0}
  python3 bench/peer/hf2gguf.py lora  HF_DIR ADAPTER_DIR OUT.gguf

q_proj / k_proj rows (and the LoRA B of q/k) are permuted exactly like llama.cpp's convert_hf_to_gguf.py
(LlamaModel.permute), so llama.cpp's NORM rope on the GGUF equals HF's rotate_half rope on the safetensors:
greedy tokens of both systems can be compared. Tied embeddings: no output.weight is written (llama.cpp then
uses token_embd). Q8_0 is written here (no llama-quantize in node-llama-cpp): blocks of 32 along the row, one
f16 scale d = amax/127, int8 q = round(x/d); 1-D tensors (norms) stay F32 as llama-quantize does.
The vocabulary is a dummy SentencePiece ("llama") vocab of the model's size: <unk>, <s>, </s>, 256 byte tokens
<0x00>..<0xFF>, then w<i>.
"""
import json
import struct
import sys

import numpy as np

T_U32, T_I32, T_F32, T_BOOL, T_STR, T_ARR = 4, 5, 6, 7, 8, 9
GGML_F32, GGML_F16, GGML_Q4_0, GGML_Q8_0 = 0, 1, 2, 8
FILE_TYPE = {'f32': 0, 'f16': 1, 'q8_0': 7, 'q4_0': 2}
ALIGN = 32


def read_safetensors(path):
    with open(path, 'rb') as f:
        n = struct.unpack('<Q', f.read(8))[0]
        hdr = json.loads(f.read(n))
    mm = np.memmap(path, dtype=np.uint8, mode='r')
    base = 8 + n
    out = {}
    for k, v in hdr.items():
        if k == '__metadata__':
            continue
        assert v['dtype'] == 'F32', (k, v['dtype'])
        s, e = v['data_offsets']
        out[k] = mm[base + s:base + e].view(np.float32).reshape(v['shape'])
    return out


def s(x):
    b = x.encode('utf-8')
    return struct.pack('<Q', len(b)) + b


def kv_bytes(key, vtype, val):
    out = s(key) + struct.pack('<I', vtype)
    if vtype == T_U32:
        out += struct.pack('<I', val)
    elif vtype == T_I32:
        out += struct.pack('<i', val)
    elif vtype == T_F32:
        out += struct.pack('<f', val)
    elif vtype == T_BOOL:
        out += struct.pack('<B', 1 if val else 0)
    elif vtype == T_STR:
        out += s(val)
    elif vtype == T_ARR:
        etype, items = val
        out += struct.pack('<IQ', etype, len(items))
        if etype == T_STR:
            out += b''.join(s(t) for t in items)
        elif etype == T_F32:
            out += np.asarray(items, dtype='<f4').tobytes()
        elif etype == T_I32:
            out += np.asarray(items, dtype='<i4').tobytes()
        else:
            raise ValueError(etype)
    else:
        raise ValueError(vtype)
    return out


def permute(w, n_head):
    # convert_hf_to_gguf.py LlamaModel.permute (n_head already = n_head_kv for k)
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def q8_0_bytes(x):
    x = np.ascontiguousarray(x, dtype=np.float32).reshape(-1, 32)
    out = []
    step = 1 << 20
    for i in range(0, x.shape[0], step):
        b = x[i:i + step]
        amax = np.abs(b).max(axis=1)
        d = amax / 127.0
        inv = np.where(d > 0, 1.0 / np.where(d > 0, d, 1), 0.0).astype(np.float32)
        v = b * inv[:, None]
        q = np.trunc(v + np.copysign(0.5, v)).astype(np.int8)  # roundf: half away from zero
        blk = np.empty(b.shape[0], dtype=[('d', '<f2'), ('qs', 'i1', (32,))])
        blk['d'] = d.astype(np.float16)
        blk['qs'] = q
        out.append(blk.tobytes())
    return b''.join(out)


def q4_0_bytes(x):
    # ggml quantize_row_q4_0_ref: blocks of 32, d = (the value of largest magnitude) / -8 as f16,
    # q = min(15, trunc(x / d + 8.5)); element j in the low nibble of byte j, element j + 16 in its high nibble.
    x = np.ascontiguousarray(x, dtype=np.float32).reshape(-1, 32)
    out = []
    step = 1 << 20
    for i in range(0, x.shape[0], step):
        b = x[i:i + step]
        idx = np.abs(b).argmax(axis=1)
        mx = b[np.arange(b.shape[0]), idx]
        d = mx / -8.0
        inv = np.where(d != 0, 1.0 / np.where(d != 0, d, 1), 0.0).astype(np.float32)
        q = np.minimum(15, np.trunc(b * inv[:, None] + 8.5)).astype(np.uint8)
        blk = np.empty(b.shape[0], dtype=[('d', '<f2'), ('qs', 'u1', (16,))])
        blk['d'] = d.astype(np.float16)
        blk['qs'] = q[:, :16] | (q[:, 16:] << 4)
        out.append(blk.tobytes())
    return b''.join(out)


def encode(arr, kind):
    """arr: numpy array in HF (row-major) layout. Returns (ggml_type, bytes)."""
    if arr.ndim == 1 or kind == 'f32':
        return GGML_F32, np.ascontiguousarray(arr, dtype='<f4').tobytes()
    if kind == 'f16':
        return GGML_F16, np.ascontiguousarray(arr, dtype='<f2').tobytes()
    if kind == 'q8_0':
        assert arr.shape[-1] % 32 == 0
        return GGML_Q8_0, q8_0_bytes(arr)
    if kind == 'q4_0':
        assert arr.shape[-1] % 32 == 0
        return GGML_Q4_0, q4_0_bytes(arr)
    raise ValueError(kind)


def nbytes(shape, gtype):
    n = int(np.prod(shape))
    return {GGML_F32: 4 * n, GGML_F16: 2 * n, GGML_Q8_0: n // 32 * 34, GGML_Q4_0: n // 32 * 18}[gtype]


def write_gguf(path, kvs, tensors):
    """tensors: list of (name, hf_shape, ggml_type, producer) where producer() -> bytes; streamed to disk."""
    infos = []
    offset = 0
    for name, shape, gtype, _ in tensors:
        infos.append((name, list(reversed(shape)), gtype, offset))
        offset += nbytes(shape, gtype)
        offset += (-offset) % ALIGN
    with open(path, 'wb') as f:
        f.write(struct.pack('<IIQQ', 0x46554747, 3, len(infos), len(kvs)))
        for kv in kvs:
            f.write(kv_bytes(*kv))
        for name, ne, gtype, off in infos:
            f.write(s(name) + struct.pack('<I', len(ne)) + b''.join(struct.pack('<Q', d) for d in ne) + struct.pack('<IQ', gtype, off))
        f.write(b'\0' * ((-f.tell()) % ALIGN))
        start = f.tell()
        for (name, shape, gtype, prod), (_, _, _, off) in zip(tensors, infos):
            assert f.tell() - start == off
            gt, data = prod()
            assert gt == gtype and len(data) == nbytes(shape, gtype), name
            f.write(data)
            f.write(b'\0' * ((-len(data)) % ALIGN))
    return offset


def gtype_of(shape, kind):
    return GGML_F32 if len(shape) == 1 or kind == 'f32' else GGML_F16 if kind == 'f16' else GGML_Q4_0 if kind == 'q4_0' else GGML_Q8_0


def dummy_vocab(n):
    tokens = ['<unk>', '<s>', '</s>'] + ['<0x%02X>' % i for i in range(256)]
    types = [2, 3, 3] + [6] * 256
    tokens += ['w%d' % i for i in range(len(tokens), n)]
    types += [1] * (n - len(types))
    scores = [0.0] * 259 + [-float(i) for i in range(259, n)]
    return tokens, scores, types


def base_kvs(cfg, arch_extra):
    head_dim = cfg.get('head_dim') or cfg['hidden_size'] // cfg['num_attention_heads']
    return [
        ('general.architecture', T_STR, 'llama'),
        *arch_extra,
        ('llama.context_length', T_U32, cfg['max_position_embeddings']),
        ('llama.embedding_length', T_U32, cfg['hidden_size']),
        ('llama.block_count', T_U32, cfg['num_hidden_layers']),
        ('llama.feed_forward_length', T_U32, cfg['intermediate_size']),
        ('llama.attention.head_count', T_U32, cfg['num_attention_heads']),
        ('llama.attention.head_count_kv', T_U32, cfg['num_key_value_heads']),
        ('llama.rope.dimension_count', T_U32, head_dim),
        ('llama.attention.layer_norm_rms_epsilon', T_F32, cfg['rms_norm_eps']),
        ('llama.rope.freq_base', T_F32, cfg['rope_theta']),
        ('llama.vocab_size', T_U32, cfg['vocab_size']),
    ]


NAMES = {
    'self_attn.q_proj': 'attn_q', 'self_attn.k_proj': 'attn_k', 'self_attn.v_proj': 'attn_v', 'self_attn.o_proj': 'attn_output',
    'mlp.gate_proj': 'ffn_gate', 'mlp.up_proj': 'ffn_up', 'mlp.down_proj': 'ffn_down',
    'input_layernorm': 'attn_norm', 'post_attention_layernorm': 'ffn_norm',
}


def convert_model(hf_dir, out, kind):
    cfg = json.load(open(f'{hf_dir}/config.json'))
    st = read_safetensors(f'{hf_dir}/model.safetensors')
    nh, nkv = cfg['num_attention_heads'], cfg['num_key_value_heads']
    tokens, scores, types = dummy_vocab(cfg['vocab_size'])
    kvs = base_kvs(cfg, [('general.name', T_STR, 'random-llama-' + kind), ('general.file_type', T_U32, FILE_TYPE[kind])]) + [
        ('tokenizer.ggml.model', T_STR, 'llama'),
        ('tokenizer.ggml.tokens', T_ARR, (T_STR, tokens)),
        ('tokenizer.ggml.scores', T_ARR, (T_F32, scores)),
        ('tokenizer.ggml.token_type', T_ARR, (T_I32, types)),
        ('tokenizer.ggml.unknown_token_id', T_U32, 0),
        ('tokenizer.ggml.bos_token_id', T_U32, 1),
        ('tokenizer.ggml.eos_token_id', T_U32, 2),
        ('tokenizer.ggml.add_bos_token', T_BOOL, False),
        ('tokenizer.ggml.add_eos_token', T_BOOL, False),
    ]
    tensors = []

    def add(gname, arr, perm_heads=None):
        def prod(arr=arr, perm_heads=perm_heads):
            a = np.asarray(arr)
            if perm_heads:
                a = permute(a, perm_heads)
            return encode(a, kind)
        tensors.append((gname, list(arr.shape), gtype_of(arr.shape, kind), prod))

    add('token_embd.weight', st['model.embed_tokens.weight'])
    for l in range(cfg['num_hidden_layers']):
        for hf, g in NAMES.items():
            w = st[f'model.layers.{l}.{hf}.weight']
            perm = nh if hf == 'self_attn.q_proj' else nkv if hf == 'self_attn.k_proj' else None
            add(f'blk.{l}.{g}.weight', w, perm)
    add('output_norm.weight', st['model.norm.weight'])
    if not cfg.get('tie_word_embeddings') and 'lm_head.weight' in st:
        add('output.weight', st['lm_head.weight'])
    size = write_gguf(out, kvs, tensors)
    print(f'{out}: {len(tensors)} tensors, {size / 2**20:.1f} MiB of tensor data ({kind})')


def convert_lora(hf_dir, ad_dir, out):
    cfg = json.load(open(f'{hf_dir}/config.json'))
    acfg = json.load(open(f'{ad_dir}/adapter_config.json'))
    st = read_safetensors(f'{ad_dir}/adapter_model.safetensors')
    nh, nkv = cfg['num_attention_heads'], cfg['num_key_value_heads']
    kvs = base_kvs(cfg, [('general.type', T_STR, 'adapter'), ('general.name', T_STR, 'random-lora'),
                         ('adapter.type', T_STR, 'lora'), ('adapter.lora.alpha', T_F32, float(acfg['lora_alpha']))])
    tensors = []
    for l in range(cfg['num_hidden_layers']):
        for hf, g in NAMES.items():
            pre = f'base_model.model.model.layers.{l}.{hf}'
            if f'{pre}.lora_A.weight' not in st:
                continue
            a = st[f'{pre}.lora_A.weight']  # [r, in]  -> ne [in, r]
            b = st[f'{pre}.lora_B.weight']  # [out, r] -> ne [r, out]
            perm = nh if hf == 'self_attn.q_proj' else nkv if hf == 'self_attn.k_proj' else None
            tensors.append((f'blk.{l}.{g}.weight.lora_a', list(a.shape), GGML_F32, lambda a=a: encode(np.asarray(a), 'f32')))
            tensors.append((f'blk.{l}.{g}.weight.lora_b', list(b.shape), GGML_F32,
                            lambda b=b, perm=perm: encode(permute(np.asarray(b), perm) if perm else np.asarray(b), 'f32')))
    size = write_gguf(out, kvs, tensors)
    print(f'{out}: {len(tensors)} LoRA tensors, rank {acfg["r"]}, alpha {acfg["lora_alpha"]}, {size / 2**20:.2f} MiB')


if __name__ == '__main__':
    if sys.argv[1] == 'model':
        convert_model(sys.argv[2], sys.argv[3], sys.argv[4])
    elif sys.argv[1] == 'lora':
        convert_lora(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        sys.exit(__doc__)

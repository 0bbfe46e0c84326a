/** Finds a Hugging Face checkpoint's tensors across model.safetensors or a sharded model.safetensors.index.json. */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { readSafetensorsHeader, readTensorAsFloat32, readTensorBytes, type SafetensorsHeader, type TensorInfo } from './safetensors.js';
import { ModelConfigError } from './hf-config.js';

export class CheckpointWeights {
  private readonly headers = new Map<string, SafetensorsHeader>();
  private readonly fileOf = new Map<string, string>();
  /** Tensors read so far (by the graph build): see unusedTensors(). */
  private readonly used = new Set<string>();

  constructor(readonly modelDir: string) {
    const single = join(modelDir, 'model.safetensors');
    const index = join(modelDir, 'model.safetensors.index.json');
    if (existsSync(index)) {
      const weightMap = (JSON.parse(readFileSync(index, 'utf8')) as { weight_map?: Record<string, string> }).weight_map;
      if (!weightMap) throw new ModelConfigError(index, 'has no weight_map');
      for (const [tensor, file] of Object.entries(weightMap)) this.fileOf.set(tensor, file);
    } else if (existsSync(single)) {
      for (const name of this.header('model.safetensors').tensors.keys()) this.fileOf.set(name, 'model.safetensors');
    } else {
      throw new ModelConfigError(modelDir, 'holds neither model.safetensors nor model.safetensors.index.json');
    }
  }

  private header(file: string): SafetensorsHeader {
    let h = this.headers.get(file);
    if (!h) {
      h = readSafetensorsHeader(join(this.modelDir, file));
      this.headers.set(file, h);
    }
    return h;
  }

  has(name: string): boolean {
    return this.fileOf.has(name);
  }

  info(name: string): TensorInfo {
    const file = this.fileOf.get(name);
    if (!file) throw new ModelConfigError(this.modelDir, `checkpoint has no tensor ${name}`);
    const info = this.header(file).tensors.get(name);
    if (!info) throw new ModelConfigError(join(this.modelDir, file), `index lists ${name} but the file does not hold it`);
    return info;
  }

  /** Reads a tensor as float32 and checks its shape. */
  read(name: string, expectedShape: number[]): Float32Array {
    const info = this.info(name);
    if (info.shape.join(',') !== expectedShape.join(',')) {
      throw new ModelConfigError(this.modelDir, `tensor ${name} has shape [${info.shape}], config.json implies [${expectedShape}]`);
    }
    this.used.add(name);
    return readTensorAsFloat32(this.header(this.fileOf.get(name)!), name);
  }

  /** Reads a tensor's stored bytes after checking its dtype and shape (pre-quantized checkpoints' packed integers). */
  readRaw(name: string, dtype: string, expectedShape: number[]): Buffer {
    const info = this.info(name);
    if (info.dtype !== dtype || info.shape.join(',') !== expectedShape.join(',')) {
      throw new ModelConfigError(this.modelDir, `tensor ${name} is ${info.dtype} [${info.shape}], the quantization config implies ${dtype} [${expectedShape}]`);
    }
    this.used.add(name);
    return readTensorBytes(this.header(this.fileOf.get(name)!), name);
  }

  /** Where a tensor's bytes are: the file (absolute path), the byte offset in it, the stored dtype. */
  storedAt(name: string): { file: string; offset: number; dtype: string; bytes: number } {
    const info = this.info(name);
    const header = this.header(this.fileOf.get(name)!);
    return { file: header.file, offset: header.dataStart + info.begin, dtype: info.dtype, bytes: info.end - info.begin };
  }

  /** Every tensor name of the checkpoint. */
  names(): string[] {
    return [...this.fileOf.keys()];
  }

  /** The checkpoint's tensors that nothing has read, in the checkpoint's order. */
  unusedTensors(): string[] {
    return [...this.fileOf.keys()].filter((name) => !this.used.has(name));
  }

  /** A cheap fingerprint of the weight files (names, sizes, modification times, headers) for the graph cache key. */
  fingerprint(): string {
    const files = [...new Set(this.fileOf.values())].sort();
    return JSON.stringify(
      files.map((f) => {
        const st = statSync(join(this.modelDir, f));
        return [f, st.size, st.mtimeMs, [...this.header(f).tensors.values()].map((t) => [t.name, t.dtype, t.shape, t.begin])];
      }),
    );
  }
}

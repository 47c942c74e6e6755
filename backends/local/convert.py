"""Convert a GGUF model file into a normal Hugging Face model directory (run as a subprocess).

transformers dequantizes GGUF weights to float32 on load; the quantizer it attaches must be
removed before `save_pretrained`, else saving refuses ("quantized with gguf"). The saved
directory reloads in well under a second, against ~30 s for the GGUF path: convert once.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from backends.local.catalogue import sha256_file


def convert(gguf: Path, out: Path, source: str) -> Path:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None:
        quantizer.remove_quantization_config(model)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    provenance = {"source": source, "gguf": gguf.name, "gguf_sha256": sha256_file(gguf)}
    (out / "tunebridge-model.json").write_text(json.dumps(provenance, indent=1))
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--gguf", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--source", default="")
    args = parser.parse_args(argv)
    convert(args.gguf, args.out, args.source)


if __name__ == "__main__":
    main()

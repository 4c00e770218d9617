"""Taking models out of goldmine, and bringing them in.

    llama.py    goldmine GPT <-> Hugging Face Llama (Llama, Mistral, Qwen2): configs, weight
                names, importing a local HF directory
    hf.py       `export --format hf` of a GPT run: a directory transformers, vLLM and TGI load
    onnx.py     `export --format onnx`: the GPT forward pass and classifiers, for ONNX Runtime
    gguf.py     `export --format gguf`: a GPT for llama.cpp (f16, q8_0)
    card.py     the model card (README.md) every export writes: lineage, metrics, license
    command.py  `goldmine export`: resolve the run, write to a temporary directory, validate,
                rename into place, record the run
"""

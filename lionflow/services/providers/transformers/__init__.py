"""Local Hugging Face transformers models (``provider="transformers"``).

`local` is the adapter (prompt, generation thread, chunks); `loading` loads and caches a model and
its tokenizer; `bridge` hands generated text from the generation thread to the event loop; `hooks`
are the streamer and stopping criterion put into ``generate()``; `grammar` constrains decoding to a
JSON schema; `tiny_model` builds a small random model for the offline demo and the tests.
"""

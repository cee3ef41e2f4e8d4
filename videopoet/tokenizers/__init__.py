"""The text, video and audio tokenizers that map captions and media into the shared vocabulary.

Named `videopoet.tokenizers` (not a top-level `tokenizers`) so it does not shadow Hugging Face's
`tokenizers` package, which `transformers` imports.
"""

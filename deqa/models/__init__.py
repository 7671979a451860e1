"""VLM plumbing: loading, the deqa_config.json schema, level tokens, prompts, tiny test models.

Submodules import transformers lazily or at their own import; ``import deqa.models`` is cheap.
"""

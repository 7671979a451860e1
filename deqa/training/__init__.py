"""DeQA fine-tuning: typed arguments, data, collator, model setup and ``DeQATrainer``.

Submodules import transformers / peft at module level; ``import deqa`` never imports this package.

- :mod:`deqa.training.config`   ModelArguments / DataArguments / LoraArguments / DeQATrainingArguments
- :mod:`deqa.training.data`     manifests -> samples, weighted mixing, same-data-set pair sampler
- :mod:`deqa.training.collator` images + soft labels -> model inputs, labels, level positions
- :mod:`deqa.training.model`    load the VLM, freeze / LoRA / QLoRA / full fine-tuning
- :mod:`deqa.training.trainer`  DeQATrainer(transformers.Trainer): the DeQA losses, metrics
- :mod:`deqa.training.recipe`   config -> build -> train -> save, used by ``deqa-train``
- :mod:`deqa.training.export`   merge a LoRA checkpoint into a standalone model
"""

# Before any submodule imports transformers: TrainingArguments imports peft, which imports
# bitsandbytes, whose offline kernel notice would otherwise open every deqa-train run.
from ..models.quiet import quiet_bitsandbytes_import

quiet_bitsandbytes_import()

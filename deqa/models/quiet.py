"""Known-harmless messages of third-party libraries, silenced one by one (never a blanket filter).

- **bitsandbytes' offline kernel notice.** Importing bitsandbytes (>= 0.48) on a CPU with
  AVX512-BF16 asks the hub, through ``kernels``, for a faster CPU 4-bit matmul. Offline
  (``HF_HUB_OFFLINE=1``: deqa's tests, many clusters; or no network) that logs "Skipping publisher
  trust check ..." and/or "Failed to load CPU gemm_4bit_forward ... could not verify publisher
  trust status" and falls back to bitsandbytes' own kernel.
  bitsandbytes cannot be imported only when 4/8-bit is asked for: peft imports it whenever it is
  installed (``peft/helpers.py``) and transformers' ``TrainingArguments`` imports peft, so every
  ``deqa-train`` call (even one that only has a typo'd key) and every LoRA adapter load printed
  both, although nothing deqa does needs that kernel (CPU QLoRA is merely slower without it).
  The two records are dropped at their own loggers, and only in their offline form: a kernel
  that fails to load online is still reported.
- **peft's ``is_gradient_checkpointing``.** ``PeftModel.__init__`` reads that property, which
  transformers 5 deprecated for ``is_activation_checkpointing``: a FutureWarning on every
  ``get_peft_model`` / ``PeftModel.from_pretrained``, i.e. every training run and every scoring,
  evaluation or export of a LoRA checkpoint. It is ignored only around those calls.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator

__all__ = ["quiet_bitsandbytes_import", "peft_wrap_quietly"]

# logger name -> (start of the message, phrases that mark its offline form: HF_HUB_OFFLINE set, or
# no network, where the hub cannot be asked who published the kernel)
_OFFLINE_KERNEL_NOTICES = {
    "bitsandbytes.backends.cpu.ops": (
        "Failed to load CPU gemm_4bit_forward from kernels-community",
        ("offline mode", "could not verify publisher trust status"),
    ),
    "kernels._internals.hf_hub": (
        "Skipping publisher trust check for 'kernels-community/quantization-bitsandbytes'",
        ("offline mode",),
    ),
}


class _DropOfflineNotice(logging.Filter):
    def __init__(self, prefix: str, markers: tuple[str, ...]):
        super().__init__()
        self.prefix, self.markers = prefix, markers

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not (message.startswith(self.prefix) and any(m in message for m in self.markers))


def quiet_bitsandbytes_import() -> None:
    """Drop bitsandbytes' offline kernel notices (see the module docstring). Idempotent and cheap:
    it imports nothing; call it before anything imports peft or bitsandbytes."""
    for name, (prefix, markers) in _OFFLINE_KERNEL_NOTICES.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropOfflineNotice) for f in logger.filters):
            logger.addFilter(_DropOfflineNotice(prefix, markers))


@contextlib.contextmanager
def peft_wrap_quietly() -> Iterator[None]:
    """Around ``get_peft_model`` / ``PeftModel.from_pretrained``: ignore the FutureWarning that
    peft's own read of ``is_gradient_checkpointing`` raises (see the module docstring)."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=r"`is_gradient_checkpointing` is deprecated", category=FutureWarning
        )
        yield

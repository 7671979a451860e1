"""Label data: file readers (formats), the data set registry, soft-label manifests.

Submodules are imported explicitly (``from deqa.data.registry import get_dataset``) so that
``import deqa.data`` stays free of heavy dependencies.
"""

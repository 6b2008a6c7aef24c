"""Callbacks that attach layerscope to a trainer: PyTorch Lightning and Hugging Face.

Each lives in its own module and imports its framework only when used:
``layerscope.integrations.lightning.LayerscopeCallback`` (needs ``lightning``) and
``layerscope.integrations.transformers.LayerscopeCallback`` (needs ``transformers`` and
``accelerate``); install both with the ``integrations`` extra.
"""

"""The shipped model, as package data: weights (.safetensors), metadata (.json), model card.

Found through ``importlib.resources`` so a wheel, an editable install, a source checkout and the
Docker image all resolve the same file (``tracekws.model.pipeline.PRETRAINED``).
"""

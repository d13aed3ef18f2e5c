"""Folder put on ``sys.path`` (by :func:`czbenchmarks.models.scgpt.import_scgpt`) so that
``import torchtext`` finds the small pure-Python stand-in in ``torchtext/`` below.

torchtext is discontinued and has no build for torch >= 2.4, yet scgpt 0.2.4 imports
``torchtext.vocab`` at import time for its gene vocabulary. Only that part is provided.
"""

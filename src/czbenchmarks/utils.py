"""Utilities kept at the reference's import path (``czbenchmarks.utils.sync_s3_to_local``)."""

from .weights import sync_s3_to_local

__all__ = ["sync_s3_to_local"]

"""czbenchmarks: the model layer of czbenchmarks-nf.

Keeps the public model API of CZI's czbenchmarks (``BaseModelImplementation``,
validators, ``ModelType``, ``DataType``, ``Organism``, ``sync_s3_to_local``) so that
model code written for it runs inside this pipeline unchanged.
"""

__version__ = "0.1.0"

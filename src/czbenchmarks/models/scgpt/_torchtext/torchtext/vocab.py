"""A token <-> index vocabulary with torchtext's ``Vocab`` interface, in plain Python.

scgpt's ``GeneVocab`` subclasses ``Vocab`` and calls ``vocab()``, ``insert_token``,
``append_token``, ``set_default_index``, ``lookup_indices``, ``get_stoi``/``get_itos``,
``__getitem__``/``__contains__``/``__len__`` and ``__call__``. Behaviour follows torchtext's
documented semantics (errors as ``RuntimeError``), with one deliberate difference: appending at
the end is O(1), because ``GeneVocab.from_dict`` inserts ~60,000 genes one by one in index order.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from typing import Dict, Iterable, List, Optional


class _Table:
    """The storage a ``Vocab`` wraps (torchtext keeps a C++ object in ``Vocab.vocab``)."""

    def __init__(self, tokens: Iterable[str] = (), default_index: Optional[int] = None) -> None:
        self.itos: List[str] = []
        self.stoi: Dict[str, int] = {}
        self.default_index = default_index
        for token in tokens:
            if token in self.stoi:
                raise RuntimeError(f"Duplicate token {token!r} in vocabulary")
            self.stoi[token] = len(self.itos)
            self.itos.append(token)


class Vocab:
    """Maps tokens to indices and back; unknown tokens raise unless a default index is set."""

    def __init__(self, vocab: "_Table | Iterable[str]") -> None:
        self.vocab = vocab if isinstance(vocab, _Table) else _Table(vocab)

    # -- queries ---------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.vocab.itos)

    def __contains__(self, token: object) -> bool:
        return token in self.vocab.stoi

    def __getitem__(self, token: str) -> int:
        index = self.vocab.stoi.get(token)
        if index is not None:
            return index
        if self.vocab.default_index is None:
            raise RuntimeError(f"Token {token} not found and default index is not set")
        return self.vocab.default_index

    def __call__(self, tokens: List[str]) -> List[int]:
        """Indices of ``tokens`` (torchtext's ``forward``)."""
        return self.lookup_indices(tokens)

    forward = __call__

    def lookup_indices(self, tokens: List[str]) -> List[int]:
        return [self[token] for token in tokens]

    def lookup_token(self, index: int) -> str:
        if not 0 <= index < len(self.vocab.itos):
            raise RuntimeError(f"Specified index {index} is out of bounds of the size of itos")
        return self.vocab.itos[index]

    def lookup_tokens(self, indices: List[int]) -> List[str]:
        return [self.lookup_token(i) for i in indices]

    def get_stoi(self) -> Dict[str, int]:
        return dict(self.vocab.stoi)

    def get_itos(self) -> List[str]:
        return list(self.vocab.itos)

    def get_default_index(self) -> Optional[int]:
        return self.vocab.default_index

    # -- changes ---------------------------------------------------------------------------
    def set_default_index(self, index: Optional[int]) -> None:
        self.vocab.default_index = index

    def append_token(self, token: str) -> None:
        if token in self.vocab.stoi:
            raise RuntimeError(f"Token {token} already exists in the Vocab")
        self.vocab.stoi[token] = len(self.vocab.itos)
        self.vocab.itos.append(token)

    def insert_token(self, token: str, index: int) -> None:
        """Insert ``token`` at ``index``, shifting later tokens up by one."""
        table = self.vocab
        if token in table.stoi:
            raise RuntimeError(f"Token {token} already exists in the Vocab")
        if not 0 <= index <= len(table.itos):
            raise RuntimeError(f"Specified index {index} is out of bounds of the size of the Vocab")
        if index == len(table.itos):
            # The common case (building from an index-sorted dict): no renumbering needed.
            table.stoi[token] = index
            table.itos.append(token)
            return
        table.itos.insert(index, token)
        for position in range(index, len(table.itos)):  # renumber only the shifted tail
            table.stoi[table.itos[position]] = position


def vocab(
    ordered_dict: "OrderedDict[str, int] | Dict[str, int]",
    min_freq: int = 1,
    specials: Optional[List[str]] = None,
    special_first: bool = True,
) -> Vocab:
    """A ``Vocab`` of the tokens of ``ordered_dict`` (token -> frequency) seen at least ``min_freq`` times."""
    specials = list(specials or [])
    tokens = [t for t, freq in ordered_dict.items() if freq >= min_freq and t not in specials]
    ordered = specials + tokens if special_first else tokens + specials
    return Vocab(_Table(ordered))


def build_vocab_from_iterator(
    iterator: Iterable[Iterable[str]],
    min_freq: int = 1,
    specials: Optional[List[str]] = None,
    special_first: bool = True,
    max_tokens: Optional[int] = None,
) -> Vocab:
    """A ``Vocab`` from an iterator of token lists, most frequent first (ties: alphabetical)."""
    counts: Counter = Counter()
    for tokens in iterator:
        counts.update(tokens)
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    if max_tokens is not None:
        ranked = ranked[: max(0, max_tokens - len(specials or []))]
    return vocab(OrderedDict(ranked), min_freq=min_freq, specials=specials, special_first=special_first)


__all__ = ["Vocab", "vocab", "build_vocab_from_iterator"]

"""Enumerations describing datasets: organisms and the typed inputs/outputs of a dataset."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any, Dict, Union


class Organism(Enum):
    """Organisms, each with its name and the prefix of its Ensembl gene IDs.

    ``Organism.HUMAN.name`` is ``"homo_sapiens"`` (not the member name), as in the reference.
    """

    HUMAN = ("homo_sapiens", "ENSG")
    MOUSE = ("mus_musculus", "ENSMUSG")
    TROPICAL_CLAWED_FROG = ("xenopus_tropicalis", "ENSXETG")
    AFRICAN_CLAWED_FROG = ("xenopus_laevis", "ENSXLAG")
    ZEBRAFISH = ("danio_rerio", "ENSDARG")
    MOUSE_LEMUR = ("microcebus_murinus", "ENSMICG")
    WILD_BOAR = ("sus_scrofa", "ENSSSCG")
    CRAB_EATING_MACAQUE = ("macaca_fascicularis", "ENSMFAG")
    RHESUS_MACAQUE = ("macaca_mulatta", "ENSMMUG")
    PLATYPUS = ("ornithorhynchus_anatinus", "ENSOANG")
    OPOSSUM = ("monodelphis_domestica", "ENSMODG")
    GORILLA = ("gorilla_gorilla", "ENSGGOG")
    CHIMPANZEE = ("pan_troglodytes", "ENSPTRG")
    MARMOSET = ("callithrix_jacchus", "ENSCJAG")
    CHICKEN = ("gallus_gallus", "ENSGALG")
    RABBIT = ("oryctolagus_cuniculus", "ENSOCUG")
    FRUIT_FLY = ("drosophila_melanogaster", "FBgn")
    RAT = ("rattus_norvegicus", "ENSRNOG")
    NAKED_MOLE_RAT = ("heterocephalus_glaber", "ENSHGLG")
    CAENORHABDITIS_ELEGANS = ("caenorhabditis_elegans", "WBGene")
    YEAST = ("saccharomyces_cerevisiae", "")
    MALARIA_PARASITE = ("plasmodium_falciparum", "PF3D7")
    SEA_LAMPREY = ("petromyzon_marinus", "ENSPMAG")
    FRESHWATER_SPONGE = ("spongilla_lacustris", "ENSLPGG")
    CORAL = ("stylophora_pistillata", "LOC")
    # Mixed LOC / GeneID identifiers: no single prefix to check.
    SEA_URCHIN = ("lytechinus_variegatus", "")

    @property
    def name(self) -> str:  # type: ignore[override]
        """The organism's latin name, e.g. ``homo_sapiens``."""
        return self.value[0]

    @property
    def prefix(self) -> str:
        """Prefix of the organism's Ensembl gene IDs (``""``: no prefix rule)."""
        return self.value[1]

    def __str__(self) -> str:
        return self.value[0]

    def __repr__(self) -> str:
        return self.value[0]

    @classmethod
    def from_name(cls, value: Union[str, "Organism"]) -> "Organism":
        """Look an organism up by latin name (``homo_sapiens``) or member name (``HUMAN``).

        Raises:
            ValueError: naming the unknown organism and the accepted names.
        """
        if isinstance(value, Organism):
            return value
        text = str(value).strip()
        for member in cls:
            if text == member.value[0] or text.upper() == member._name_:
                return member
        known = ", ".join(m.value[0] for m in cls)
        raise ValueError(f"Unknown organism '{text}'. Known organisms: {known}")


@dataclass(frozen=True)
class DataTypeSpec:
    """What a :class:`DataType` carries: its name, Python type and direction."""

    name: str
    dtype: Any
    description: str
    is_input: bool = True


def _spec(name: str, dtype: Any, description: str, is_input: bool = True) -> DataTypeSpec:
    return DataTypeSpec(name, dtype, description, is_input)


class DataType(Enum):
    """Typed slots of a dataset: inputs a model reads and outputs it writes."""

    METADATA = _spec("metadata", "pandas.DataFrame", "Sample metadata")
    ANNDATA = _spec("anndata", "anndata.AnnData", "AnnData object containing expression data")
    ORGANISM = _spec("organism", Organism, "Organism type (e.g. human, mouse)")
    EMBEDDING = _spec("embedding", "numpy.ndarray", "Learned cell embeddings", is_input=False)
    CONDITION_KEY = _spec("condition_key", str, "Condition key for perturbation data")
    SPLIT_KEY = _spec("split_key", str, "Train, test, val, split key for perturbation data")
    PERTURBATION_PRED = _spec(
        "perturbation",
        "tuple[str, pandas.DataFrame]",
        "Tuple of (condition_str, Predicted perturbation effects)",
        is_input=False,
    )
    PERTURBATION_TRUTH = _spec(
        "perturbation_truth", "Dict[str, pandas.DataFrame]", "Truth perturbation data"
    )

    @property
    def spec(self) -> DataTypeSpec:
        return self.value

    @property
    def dtype(self) -> Any:
        """The Python type of the slot, resolved lazily so that pandas/anndata load only when asked."""
        return resolve_dtype(self.value.dtype)

    @property
    def description(self) -> str:
        return self.value.description

    @property
    def is_input(self) -> bool:
        return self.value.is_input

    @property
    def is_output(self) -> bool:
        return not self.value.is_input

    def __hash__(self) -> int:
        return hash(self._name_)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, str):
            return self._name_ == other
        return Enum.__eq__(self, other)

    def __str__(self) -> str:
        return self._name_

    def __repr__(self) -> str:
        return self._name_


def resolve_dtype(dtype: Any) -> Any:
    """Turn the dotted type names of :class:`DataTypeSpec` into real types (typing generics included)."""
    if not isinstance(dtype, str):
        return dtype
    import anndata as ad
    import numpy as np
    import pandas as pd

    table: Dict[str, Any] = {
        "pandas.DataFrame": pd.DataFrame,
        "anndata.AnnData": ad.AnnData,
        "numpy.ndarray": np.ndarray,
        "tuple[str, pandas.DataFrame]": tuple[str, pd.DataFrame],
        "Dict[str, pandas.DataFrame]": Dict[str, pd.DataFrame],
    }
    return table[dtype]


DataValue = Any  # Union[pd.DataFrame, ad.AnnData, np.ndarray, Organism, str, ...]

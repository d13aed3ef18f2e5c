"""Which UCE species (and protein-embedding file) a dataset's organism uses.

The reference embedded every dataset as ``human`` whatever its organism; here the species
follows ``--organism`` by default (``species_mode="organism"``), and ``species_mode="czbenchmarks"``
reproduces the reference (every organism through the human protein embeddings). UCE knows eight species, each with an ESM2 protein-embedding file in
``model_files/protein_embeddings/`` (a dict gene symbol -> vector) and a block of rows in
``all_tokens.torch`` starting at ``species_offsets.pkl[species]``.
"""

from __future__ import annotations

from typing import Dict, Tuple

from ...datasets.types import Organism

#: Organism -> the species name UCE's files use (species_offsets.pkl keys, species_chrom.csv).
SPECIES_BY_ORGANISM: Dict[Organism, str] = {
    Organism.HUMAN: "human",
    Organism.MOUSE: "mouse",
    Organism.TROPICAL_CLAWED_FROG: "frog",
    Organism.ZEBRAFISH: "zebrafish",
    Organism.MOUSE_LEMUR: "mouse_lemur",
    Organism.WILD_BOAR: "pig",
    Organism.CRAB_EATING_MACAQUE: "macaca_fascicularis",
    Organism.RHESUS_MACAQUE: "macaca_mulatta",
}

#: Species -> file name under ``model_files/protein_embeddings/`` (UCE's own names).
PROTEIN_EMBEDDING_FILES: Dict[str, str] = {
    "human": "Homo_sapiens.GRCh38.gene_symbol_to_embedding_ESM2.pt",
    "mouse": "Mus_musculus.GRCm39.gene_symbol_to_embedding_ESM2.pt",
    "frog": "Xenopus_tropicalis.Xenopus_tropicalis_v9.1.gene_symbol_to_embedding_ESM2.pt",
    "zebrafish": "Danio_rerio.GRCz11.gene_symbol_to_embedding_ESM2.pt",
    "mouse_lemur": "Microcebus_murinus.Mmur_3.0.gene_symbol_to_embedding_ESM2.pt",
    "pig": "Sus_scrofa.Sscrofa11.1.gene_symbol_to_embedding_ESM2.pt",
    "macaca_fascicularis": "Macaca_fascicularis.Macaca_fascicularis_6.0.gene_symbol_to_embedding_ESM2.pt",
    "macaca_mulatta": "Macaca_mulatta.Mmul_10.gene_symbol_to_embedding_ESM2.pt",
}


def species_for_organism(organism: Organism | str) -> str:
    """UCE's species name for ``organism`` (an :class:`Organism` or its latin/member name).

    Raises:
        ValueError: UCE has no protein embeddings for that organism.
    """
    organism = Organism.from_name(organism)
    try:
        return SPECIES_BY_ORGANISM[organism]
    except KeyError:
        known = ", ".join(o.name for o in SPECIES_BY_ORGANISM)
        raise ValueError(f"UCE has no protein embeddings for {organism.name}; it knows: {known}") from None


#: How the species is chosen: the dataset's organism (default), or always human as czbenchmarks does.
SPECIES_MODES: Tuple[str, ...] = ("organism", "czbenchmarks")
#: The species czbenchmarks' UCE embeds every dataset as.
REFERENCE_SPECIES = "human"


def species_for_mode(organism: Organism | str, mode: str = "organism") -> str:
    """UCE's species for a dataset of ``organism`` under ``mode`` (see :data:`SPECIES_MODES`).

    Raises:
        ValueError: unknown mode, or (mode ``organism``) an organism UCE has no embeddings for.
    """
    if mode not in SPECIES_MODES:
        raise ValueError(f"species_mode must be one of {SPECIES_MODES}, not {mode!r}")
    if mode == "czbenchmarks":
        return REFERENCE_SPECIES
    return species_for_organism(organism)

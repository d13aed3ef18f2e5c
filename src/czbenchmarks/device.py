"""Choosing the compute device, and failing fast when a GPU was asked for but is unusable."""

from __future__ import annotations

import os
import shutil
import subprocess


class GpuUnavailableError(RuntimeError):
    """The gpu profile asked for CUDA but this task cannot use it."""


def gpu_facts() -> str:
    """One line of driver/CUDA facts for error messages (best effort, never raises)."""
    facts = [f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '<unset>')}"]
    try:
        import torch

        facts.append(f"torch {torch.__version__} built for CUDA {torch.version.cuda}")
    except Exception as err:  # torch missing or broken: say so
        facts.append(f"torch not importable ({type(err).__name__})")
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(
                ["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
                capture_output=True, text=True, timeout=20,
            )
            facts.append(f"nvidia-smi: {(out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr).strip() else 'no output'}")
        except Exception as err:
            facts.append(f"nvidia-smi failed ({type(err).__name__})")
    else:
        facts.append("nvidia-smi not found (no NVIDIA driver visible in this container)")
    return "; ".join(facts)


def select_device(requested: str = "auto") -> str:
    """``"cuda"`` or ``"cpu"``.

    ``auto`` takes CUDA when usable. ``cuda`` (what the gpu profile passes) raises
    :class:`GpuUnavailableError` with the driver facts when CUDA cannot be used, so a GPU job
    never silently runs for hours on CPU.
    """
    requested = (requested or "auto").lower()
    if requested == "cpu":
        return "cpu"
    import torch

    usable = False
    try:
        usable = torch.cuda.is_available() and torch.cuda.device_count() > 0
        if usable:
            torch.zeros(1, device="cuda")  # surfaces driver/runtime mismatches now, not mid-run
    except Exception:
        usable = False
    if usable:
        return "cuda"
    if requested == "cuda":
        raise GpuUnavailableError(f"GPU requested (--device cuda) but CUDA is unusable: {gpu_facts()}")
    return "cpu"

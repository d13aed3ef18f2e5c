#!/usr/bin/env bash
# Set up czbenchmarks-nf on a fresh machine: Nextflow (from Maven Central JARs, unless `nextflow`
# is already on PATH) and a Python virtual environment (.venv) with the package and test tools.
# Idempotent: re-running only fills in what is missing.
#
#   bash tools/setup.sh && source .venv/bin/activate
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
python="${PYTHON:-python3}"

log() { printf '[setup] %s\n' "$*"; }

# --- Nextflow ------------------------------------------------------------------------------
existing_nextflow="$(PATH="$(printf '%s' "$PATH" | tr ':' '\n' | grep -v "^$root/.venv/bin$" | paste -sd:)" command -v nextflow || true)"
if [[ -n "$existing_nextflow" && -z "${CZB_LOCAL_NEXTFLOW:-}" ]]; then
  log "using the nextflow already on PATH: $existing_nextflow"
else
  if ! compgen -G "tools/nextflow-lib/nextflow-[0-9]*.jar" >/dev/null; then
    command -v mvn >/dev/null || { echo "[setup] Maven (mvn) and Java 17 are needed to fetch Nextflow" >&2; exit 1; }
    log "fetching the Nextflow JARs from Maven Central (tools/nextflow-pom.xml)"
    mvn -B -q -f tools/nextflow-pom.xml dependency:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory=nextflow-lib
  fi
  NXF_HOME="${NXF_HOME:-$root/.nxf-home}" tools/nextflow -version | grep -m1 version | sed 's/^ */[setup] nextflow /'
fi

# --- Python --------------------------------------------------------------------------------
if [[ ! -x .venv/bin/python ]]; then
  log "creating .venv with $($python --version)"
  "$python" -m venv .venv
fi
if ! .venv/bin/python -c "import czbenchmarks, scvi, scanpy, moto" 2>/dev/null \
   || [[ requirements/test.lock.txt -nt .venv/.czb-installed ]]; then
  log "installing the pinned Python environment (requirements/test.lock.txt)"
  .venv/bin/pip install -q -r requirements/test.lock.txt
  .venv/bin/pip install -q --no-deps -r requirements/no-deps.txt
  .venv/bin/pip install -q --no-deps -e .
  touch .venv/.czb-installed
fi
# nf-core/tools for `nf-core pipelines lint`, in its own venv: its dependencies clash with the pipeline's.
if [[ ! -x .venv-nfcore/bin/nf-core ]]; then
  log "installing nf-core/tools 4.2.1 into .venv-nfcore (lint only)"
  "$python" -m venv .venv-nfcore
  .venv-nfcore/bin/pip install -q nf-core==4.2.1
fi
if [[ -z "$existing_nextflow" || -n "${CZB_LOCAL_NEXTFLOW:-}" ]]; then
  ln -sf "$root/tools/nextflow" .venv/bin/nextflow
fi
# Plugins are never needed; keep Nextflow's home inside the checkout unless the user chose one.
grep -q NXF_HOME .venv/bin/activate || cat >> .venv/bin/activate <<ACT
export NXF_HOME="\${NXF_HOME:-$root/.nxf-home}"
export NXF_OFFLINE="\${NXF_OFFLINE:-true}"
ACT
log "done: source .venv/bin/activate, then: nextflow run main.nf -profile test"

"""Run nf-core's pipeline lint offline (no nf-core/modules clone) and exit non-zero on failures.

`nf-core pipelines lint` also lints installed nf-core modules, which needs a clone of
nf-core/modules from GitHub; this pipeline has only local modules, so the pipeline checks
are run directly. Needs the nf-core venv made by tools/setup.sh and `nextflow` on PATH.
"""

import sys

from nf_core.pipelines.lint import PipelineLint


def main(directory: str = ".") -> int:
    lint = PipelineLint(directory, hide_progress=True)
    lint._load()
    lint._lint_pipeline()
    for name, message in lint.failed:
        print(f"FAILED  {name}: {message}")
    for name, message in lint.warned:
        print(f"WARNED  {name}: {message}")
    print(f"nf-core lint: {len(lint.passed)} passed, {len(lint.warned)} warned, "
          f"{len(lint.failed)} failed, {len(lint.ignored)} ignored")
    return 1 if lint.failed else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))

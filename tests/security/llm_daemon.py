"""`homeostat ARGS` with the LLM diagnoser (configured from HOMEOSTAT_LLM_*) as the loop's diagnoser.

`homeostat run` has no setting for the diagnoser yet: runtime/daemon.py builds its LoopOptions
without one, so the loop falls back to `DeterministicDiagnoser()`. Until the daemon's config
grows a `diagnoser:` section, this launcher swaps that default for the env-configured LLM
diagnoser before the CLI starts; everything else is the real daemon. The live-secrets test
checks the audit log to make sure the LLM really diagnosed (a stale swap fails loudly).
"""

from __future__ import annotations

import runtime.loop
from runtime.cli import main
from runtime.diagnose_cli import llm_diagnoser_from_env

if __name__ == "__main__":
    runtime.loop.DeterministicDiagnoser = llm_diagnoser_from_env  # type: ignore[misc,assignment]
    main()

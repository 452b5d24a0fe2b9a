"""Stage 08, ablations: the SmolLM3 recipe's switches (NoPE, intra-document masking, no weight decay
on the embeddings, WSD decaying to zero) tried alone and together at small scale, several seeds
each, with the claims of the SmolLM notes judged against the result.

``plan`` reads ``configs/ablations/smollm3.yaml``; ``heldout`` splits the token folders;
``runs`` trains and measures each (variant, seed) with the local trainer; ``probe`` holds the
held-out measurements; ``stats`` the standard errors and the verdict rule; ``tables`` and
``figures`` what the report shows; ``stage`` holds ``run(ctx) -> StageResult``.
"""

from .plan import Plan, load_plan
from .stage import run

__all__ = ["Plan", "load_plan", "run"]

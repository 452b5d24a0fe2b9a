"""``python -m zagreus_utils.stages.sft {preprocess|train} CONFIG``: the process that runs axolotl's CLI
(see :func:`zagreus_utils.stages.sft.axolotl.axolotl_argv`); its imports stay light, since the worker
processes that ``datasets`` spawns re-import it."""

from __future__ import annotations

import gc
import importlib
import sys

from .validate import apply_offline_env

def _main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("preprocess", "train"):
        print(f"usage: python -m {__package__} {{preprocess|train}} CONFIG.yaml", file=sys.stderr)
        return 2
    apply_offline_env()
    step, config = argv
    if step == "preprocess":
        from axolotl.cli.preprocess import do_cli
    else:
        from axolotl.cli.train import do_cli
    # axolotl's multipack sampler calls gc.collect() each time it packs (5 times per dataloader: every
    # epoch and every eval); with the ~700k objects that axolotl's training modules put on the heap
    # each call costs ~0.6 s on 2 cores. Import them first and freeze them out of the collector.
    for module in ("axolotl.train", "axolotl.common.datasets", "axolotl.core.builders", "axolotl.loaders"):
        try:
            importlib.import_module(module)
        except ImportError:  # another axolotl layout: only the speed-up is lost
            pass
    gc.collect()
    gc.freeze()
    do_cli(config=config)
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))

"""The learning rate a nanotron config means at each step: one ``lr_at(step, schedule)``.

The formula is nanotron's ``lr_scheduler_builder`` (``nanotron/helpers.py``): warmup (linear or
constant) up to ``lr_warmup_steps``, the peak until ``lr_decay_starting_step`` (default: the end of
warmup), a decay (linear, cosine or 1-sqrt) over ``lr_decay_steps`` (default: the steps left after
warmup and the decay start) down to ``min_decay_lr`` (default: the peak), then ``min_decay_lr``.
The config renderer's checks, the local trainer's scheduler and ``zagreus audit`` all ask this one.

The profile's ``training.wsd_decay_fraction`` (warmup-stable-decay ending in a linear decay to
zero over the last fraction of the steps) becomes nanotron's own keys in one place,
:func:`scheduler_section`: every reader of the rendered config then sees the same schedule.
"""

from __future__ import annotations

import math

from ..pipeline.errors import ZagreusError

DECAY_STYLES = ("linear", "cosine", "1-sqrt")


class NanotronSchedule:
    """A config's schedule; called with a step it is nanotron's lambda (a multiplier of the peak
    lr) for a torch ``LambdaLR``."""

    def __init__(self, learning_rate: float, warmup_steps: int, warmup_style: str, decay_start: int | None,
                 decay_steps: int | None, decay_style: str, min_lr: float, train_steps: int):
        self.lr = learning_rate
        self.warmup = warmup_steps or 0
        self.warmup_style = warmup_style
        if decay_steps is None:  # nanotron's defaults
            decay_steps = train_steps - self.warmup - (decay_start or 0)
        self.decay_steps = decay_steps
        self.decay_start = self.warmup if decay_start is None else decay_start
        self.decay_style = decay_style
        self.min_lr = min_lr

    def lr_at(self, step: int) -> float:
        return lr_at(step, self)

    def __call__(self, step: int) -> float:
        return lr_at(step, self) / self.lr

    @classmethod
    def from_section(cls, s: dict, train_steps: int) -> "NanotronSchedule":
        """From ``optimizer.learning_rate_scheduler`` as written (numbers may be YAML strings such
        as ``1e-7``; missing keys take nanotron's defaults)."""
        lr = float(s["learning_rate"])
        min_lr = s.get("min_decay_lr")
        start, steps = s.get("lr_decay_starting_step"), s.get("lr_decay_steps")
        return cls(lr, int(s.get("lr_warmup_steps") or 0), s.get("lr_warmup_style") or "linear",
                   None if start is None else int(start), None if steps is None else int(steps),
                   s.get("lr_decay_style") or "linear", lr if min_lr is None else float(min_lr), train_steps)

    @classmethod
    def from_config(cls, config: dict) -> "NanotronSchedule":
        return cls.from_section(config["optimizer"]["learning_rate_scheduler"], config["tokens"]["train_steps"])


def wsd_decay(train_steps: int, fraction: float) -> tuple[int, int]:
    """``(lr_decay_starting_step, lr_decay_steps)`` of a decay over the last ``fraction`` of the
    steps that ends exactly at ``train_steps``: ``lr_at(train_steps) == min_decay_lr``."""
    start = round(train_steps * (1 - fraction))
    return start, train_steps - start


def scheduler_section(t) -> dict:
    """nanotron's ``optimizer.learning_rate_scheduler`` of the profile's ``training`` settings.

    With ``wsd_decay_fraction`` set it replaces the ``lr_decay_*`` keys and ``min_decay_lr``:
    a linear decay from ``train_steps x (1 - fraction)`` (rounded) to 0 at the last step."""
    section = {"learning_rate": t.learning_rate, "lr_decay_starting_step": t.lr_decay_starting_step,
               "lr_decay_steps": t.lr_decay_steps, "lr_decay_style": t.lr_decay_style,
               "lr_warmup_steps": t.warmup_steps,  # init_rewarmup_steps for a run from init_from
               "lr_warmup_style": t.lr_warmup_style,
               "min_decay_lr": t.min_decay_lr}
    fraction = t.wsd_decay_fraction
    if fraction is not None:
        start, steps = wsd_decay(t.train_steps, fraction)
        section.update(lr_decay_starting_step=start, lr_decay_steps=steps, lr_decay_style="linear",
                       min_decay_lr=0.0)
    return section


def lr_at(step: int, schedule: NanotronSchedule) -> float:
    """The learning rate nanotron's scheduler gives at ``step``."""
    s = schedule
    if s.warmup == 0 and s.decay_steps == 0:
        return s.lr
    if s.warmup_style is not None and step <= s.warmup:
        return s.lr * step / max(s.warmup, 1) if s.warmup_style == "linear" else s.lr
    if step < s.decay_start:
        return s.lr
    if step < s.decay_start + s.decay_steps:
        progress = (step - s.decay_start) / s.decay_steps
        if s.decay_style == "linear":
            factor = 1 - progress
        elif s.decay_style == "cosine":
            factor = (1 + math.cos(math.pi * progress)) / 2
        elif s.decay_style == "1-sqrt":
            factor = 1 - math.sqrt(progress)
        else:
            raise ZagreusError(f"unknown lr_decay_style {s.decay_style!r}: use linear, cosine or 1-sqrt")
        return s.min_lr + (s.lr - s.min_lr) * factor
    return s.min_lr

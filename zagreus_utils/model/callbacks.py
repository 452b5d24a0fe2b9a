"""transformers' Trainer as the local trainer uses it: the metrics callback (``metrics.jsonl``,
``samples.jsonl``, a checkpoint's completion record on save), a quiet progress bar, and a Trainer
that records which samples each step consumed."""

from __future__ import annotations

import json
import time
from pathlib import Path

from ..pipeline import progress
from ..results import formatting
from .checkpoints import CHECKPOINT_PREFIX, record_complete, truncate_jsonl


def metrics_callback_class():
    from transformers import TrainerCallback

    class MetricsCallback(TrainerCallback):
        """One JSON line per optimizer step: loss, lr, grad norm, tokens seen, tokens/s."""

        def __init__(self, metrics_path: Path, tokens_per_step: int, samples_path: Path | None, sink: list,
                     step_delay: float = 0.0):
            self.metrics_path, self.samples_path = metrics_path, samples_path
            self.tokens_per_step = tokens_per_step
            self.sink = sink
            self.step_delay = step_delay
            self._t = None
            self._step_time = None
            self.t_start = None

        def on_train_begin(self, args, state, control, **kwargs):
            self._t = self.t_start = time.perf_counter()
            self.progress = progress.Steps("train", "pretraining", state.max_steps, start=state.global_step)
            self._cpu = time.process_time()
            self._step_cpu = None

        def on_step_end(self, args, state, control, **kwargs):
            if not state.is_world_process_zero:
                self.sink.clear()
                return
            if self.step_delay:  # ZAGREUS_STEP_DELAY: throttle (lets a test kill a run mid-way)
                time.sleep(self.step_delay)
            now, cpu = time.perf_counter(), time.process_time()
            self._step_time, self._step_cpu = now - self._t, cpu - self._cpu
            self._t, self._cpu = now, cpu
            if self.samples_path is not None:
                with open(self.samples_path, "a", encoding="utf-8") as fh:
                    fh.write(json.dumps({"step": state.global_step, "samples": list(self.sink)}) + "\n")
            self.sink.clear()

        def on_save(self, args, state, control, **kwargs):
            if state.is_world_process_zero:  # the Trainer has written the whole checkpoint: record it
                record_complete(Path(args.output_dir) / f"{CHECKPOINT_PREFIX}{state.global_step}")

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not logs or "loss" not in logs or not state.is_world_process_zero:
                return
            dt = self._step_time or float("nan")
            row = {"step": state.global_step, "loss": logs["loss"], "lr": logs.get("learning_rate"),
                   "grad_norm": logs.get("grad_norm"), "tokens_seen": state.global_step * self.tokens_per_step,
                   "tokens_per_sec": self.tokens_per_step / dt if dt and dt == dt else None,
                   "step_time_s": dt, "step_cpu_s": self._step_cpu, "elapsed_s": time.perf_counter() - self.t_start}
            with open(self.metrics_path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(row) + "\n")
            tps = row["tokens_per_sec"]
            self.progress.update(state.global_step, f"loss {row['loss']:.3f}",
                                 f"{formatting.human(tps)} tok/s" if tps else "")

    return MetricsCallback


def quiet_progress_class():
    from transformers.trainer_callback import ProgressCallback

    class QuietProgress(ProgressCallback):
        """The tqdm bar without a printed dict per logged step."""

        def on_log(self, args, state, control, logs=None, **kwargs):
            if self.training_bar is not None and logs and "loss" in logs:
                self.training_bar.set_postfix(loss=f"{logs['loss']:.3f}", refresh=False)

    return QuietProgress


def trainer_class():
    from transformers import Trainer

    class ZagreusTrainer(Trainer):
        """transformers' Trainer, recording which samples each step consumed."""

        sample_sink: list | None = None

        def _load_optimizer_and_scheduler(self, checkpoint):
            # DDP on CPU (torchrun, gloo): transformers maps the optimizer state to args.device, here
            # "cpu:<rank>", a location torch.load cannot restore; the state belongs on "cpu".
            if checkpoint is None or self.args.world_size <= 1 or self.args.device.type != "cpu":
                return super()._load_optimizer_and_scheduler(checkpoint)
            import torch

            opt, sched = Path(checkpoint) / "optimizer.pt", Path(checkpoint) / "scheduler.pt"
            if opt.is_file() and sched.is_file():
                self.optimizer.load_state_dict(torch.load(opt, map_location="cpu", weights_only=True))
                self.lr_scheduler.load_state_dict(torch.load(sched, weights_only=True))

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            idx = inputs.pop("sample_index", None)
            if idx is not None and self.sample_sink is not None:
                self.sample_sink.extend(int(i) for i in idx.tolist())
            return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                        num_items_in_batch=num_items_in_batch)

    return ZagreusTrainer


def embedding_norm_callback_class():
    from transformers import TrainerCallback

    class EmbeddingNormCallback(TrainerCallback):
        """The mean L2 norm of the input embedding's rows (tied: the LM head's too), one JSON line
        ``{"step", "embed_norm"}`` at step 0 and every ``every`` steps after (and at the last step)."""

        def __init__(self, path: Path, every: int = 1):
            self.path, self.every = Path(path), max(1, int(every))

        def _log(self, step: int, model) -> None:
            import torch

            with torch.no_grad():
                norm = float(model.get_input_embeddings().weight.detach().float().norm(dim=1).mean())
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps({"step": step, "embed_norm": norm}) + "\n")

        def on_train_begin(self, args, state, control, model=None, **kwargs):
            if not state.is_world_process_zero:
                return
            if state.global_step == 0:  # from scratch: a curve of this run only
                self.path.write_text("", encoding="utf-8")
                self._log(0, model)
            else:  # resumed: drop what was logged after the checkpoint
                truncate_jsonl(self.path, state.global_step)

        def on_step_end(self, args, state, control, model=None, **kwargs):
            step = state.global_step
            if state.is_world_process_zero and (step % self.every == 0 or step == state.max_steps):
                self._log(step, model)

    return EmbeddingNormCallback


def read_jsonl(path: Path) -> list[dict]:
    """The rows of a JSON-lines log (none when the file is missing)."""
    path = Path(path)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]

"""Lightning callbacks the generated nequip configs name by import path (the job's environment has this package)."""

from __future__ import annotations

from lightning.pytorch.callbacks import Callback


class StopBelowLearningRate(Callback):
    """Stop training once the learning rate has been reduced below ``min_lr``: the minimalist paper's Allegro criterion
    (learning rate halved on plateau, training ends when it falls below 1e-5). Lightning has no such callback."""

    def __init__(self, min_lr: float):
        self.min_lr = float(min_lr)

    def on_train_epoch_end(self, trainer, pl_module):
        rates = [group['lr'] for optimizer in trainer.optimizers for group in optimizer.param_groups]
        if rates and max(rates) < self.min_lr:
            trainer.should_stop = True

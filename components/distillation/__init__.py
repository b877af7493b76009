"""The distillation library the steps share: losses (registered by key), the trainer and its
checkpoints, student builders, the transfer set (augmentation), and measurement. It imports
``components.common`` and no step."""

"""Projector-only training, one concern a module:

    config       TrainConfig, flag metadata, presets, YAML files, --set (imports no torch: --help reads it)
    data         sources (manifest, folder, Parquet, Hub), target text, encoder cache, batches
    loss         encoder → projector → LM, the loss, SpecAugment
    resume       a run's file names, its newest intact checkpoint, stopping on a signal (no torch)
    checkpoints  random states, metrics and plots
    trainer      distributed set-up, the loop, evaluation during training, `train()`
    smoke        the offline inputs of `--preset smoke`

Nothing is imported here, so `tinyaudio --help` pays only for `training.config`.
"""

"""Training pipelines for the workspace's models (torchvision ``references/`` style).

- :mod:`training.avs.train` -- robust audio-visual segmentation (AVSBench S4 / MS3, negatives, gate).
- :mod:`training.trackgpt.train` -- TrackGPT's three stages (images; referring videos; instruction tuning).
- :mod:`training.common` -- what both share: YAML configs, the resumable loop, checkpoints, logs, curves.

Scripts import the model libraries (``avs``, ``trackgpt``) and the evaluation package (``perception_eval``),
never the ROS nodes. See ``training/README.md``.
"""

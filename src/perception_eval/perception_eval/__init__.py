"""Evaluation of the perception workspace: benchmark metrics and dataset readers.

Plain Python / NumPy; nothing here imports rclpy.

- :mod:`perception_eval.metrics` -- DAVIS-2017 J/F (TrackGPT's metrics), AVSBench mIoU / F-score,
  AVSBench-Robust FPR and global metrics.
- :mod:`perception_eval.datasets` -- readers of the on-disk layouts (DAVIS-2017, Refer-DAVIS-17,
  Ref-YouTube-VOS, InsTrack, AVSBench S4 / MS3, AVSBench-Robust) and index-mask PNG I/O.
"""

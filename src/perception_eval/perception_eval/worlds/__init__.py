"""Generated worlds: seeded synthetic datasets in the real benchmarks' folder layouts.

- :mod:`perception_eval.worlds.instruction` -- instruction-tracking videos (Ref-YouTube-VOS / InsTrack layout).
- :mod:`perception_eval.worlds.audiovisual` -- sounding-object clips (AVSBench S4 layout + AVSBench-Robust
  audio conditions).
- :mod:`perception_eval.worlds.categories` -- the shared category table, colours and held-out pairs.
- :mod:`perception_eval.worlds.drawing` -- object sprites, backgrounds and compositing.
- :mod:`perception_eval.worlds.sounds` -- the category sounds.
- :mod:`perception_eval.worlds.preview` -- contact sheets for a person to look at.
- :mod:`perception_eval.worlds.cli` -- the ``perception-worlds`` command.
"""

from .audiovisual import AudioVisualWorldConfig, generate_audiovisual_world
from .instruction import InstructionWorldConfig, generate_instruction_world

__all__ = [
    "AudioVisualWorldConfig",
    "InstructionWorldConfig",
    "generate_audiovisual_world",
    "generate_instruction_world",
]

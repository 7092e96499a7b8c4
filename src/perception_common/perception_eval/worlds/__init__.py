"""Generated worlds: seeded synthetic datasets in the real benchmarks' folder layouts.

- :mod:`perception_eval.worlds.instruction` -- instruction-tracking videos (Ref-YouTube-VOS / InsTrack layout).
- :mod:`perception_eval.worlds.categories` -- the shared category table, colours and held-out pairs.
- :mod:`perception_eval.worlds.drawing` -- object sprites, backgrounds and compositing.
- :mod:`perception_eval.worlds.cli` -- the ``perception-worlds`` command.
"""

from .instruction import InstructionWorldConfig, generate_instruction_world

__all__ = ["InstructionWorldConfig", "generate_instruction_world"]

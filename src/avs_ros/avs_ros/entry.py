"""Console entry point of ``avs_node``: signals are handled from the first line (see
:mod:`perception_common.signals`), then the node's module (torch, the model code) is imported and run."""

from perception_common.signals import quiet_until_running


def avs_node() -> None:
    quiet_until_running("avs_node")
    from .avs_node import main

    main()

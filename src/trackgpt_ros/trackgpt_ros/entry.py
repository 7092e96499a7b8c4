"""Console entry point of ``tracker_node``: signals are handled from the first line (see
:mod:`perception_common.signals`), then the node's module (torch, the model code) is imported and run."""

from perception_common.signals import quiet_until_running


def tracker_node() -> None:
    quiet_until_running("tracker_node")
    from .tracker_node import main

    main()

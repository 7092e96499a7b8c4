"""Console entry points of this package's nodes: signals are handled from the first line (see
:mod:`perception_common.signals`), then the node's module is imported and run."""

from perception_common.signals import quiet_until_running


def camera_node() -> None:
    quiet_until_running("camera_node")
    from .camera_node import main

    main()


def microphone_node() -> None:
    quiet_until_running("microphone_node")
    from .microphone_node import main

    main()

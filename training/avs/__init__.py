"""Training of the robust AVS model (``python -m training.avs.train --help``)."""

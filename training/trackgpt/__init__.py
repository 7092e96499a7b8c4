"""Training of TrackGPT's three stages (``python -m training.trackgpt.train --help``)."""

"""Small command-line tools that talk to the running graph."""

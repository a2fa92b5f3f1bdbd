"""An example third-party autostage plugin package (see `plugin.py`)."""

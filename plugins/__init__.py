"""autostage's built-in plugins. Each module named in the `autostage` entry-point group of
pyproject.toml is one plugin, registered exactly as a third-party package would be; the other
modules (lion, tokenize, lm_*) are helpers those plugins import."""

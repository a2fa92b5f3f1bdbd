"""autostage: search training strategies — stage order, LR path, optimizer — not only
hyperparameters. See README.md; the public pieces live in their modules:
`autostage.components` (plugin base classes), `autostage.decisions` (what a stage policy
returns), `autostage.hookspecs` (hooks and `hookimpl`)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("autostage")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

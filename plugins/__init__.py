"""autostage's built-in plugins. Each module is one plugin, registered through the
`autostage` entry-point group exactly as a third-party package would be."""

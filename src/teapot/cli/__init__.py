"""The `teapot` command, one module per command group."""

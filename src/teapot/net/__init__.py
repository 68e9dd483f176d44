"""The box's own network: a top-of-rack switch and the emulated hosts cabled to it."""

"""The deployer: every service described once, read by two targets (local, kubernetes)."""

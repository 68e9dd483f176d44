"""Bootstrap drivers: what a freshly provisioned host runs to become a Kubernetes node."""

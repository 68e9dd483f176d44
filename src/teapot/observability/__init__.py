"""What operators watch: Prometheus metrics, structured logs and health checks of the API and the
conductor. The API and the conductor hook these in; nothing here knows their routes or resources."""

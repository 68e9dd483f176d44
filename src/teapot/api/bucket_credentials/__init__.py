"""/v1/clusters/{cluster}/bucket_credentials: per-access S3 credentials of a cluster."""

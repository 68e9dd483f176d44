"""/v1/clusters/{cluster}/volume_attachments: Cinder volumes attached to a cluster's hosts."""

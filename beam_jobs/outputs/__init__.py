"""What the jobs write: TFRecords, score tables, feature profiles, manifests, and all-or-nothing publishing."""

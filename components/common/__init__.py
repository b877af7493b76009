"""What several steps share: config schema, hashing, dataset IO, model helpers, the edges to MLflow and DVC."""

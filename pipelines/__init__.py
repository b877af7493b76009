"""distillops pipelines: the distillation DAG, the drift-monitor DAG, compile, local run, and the CLI."""

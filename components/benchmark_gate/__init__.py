"""benchmark_gate: the student against the teacher and the serving champion; a report with every reason."""

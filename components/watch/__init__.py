"""watch: rerun the DAG when the data version or the teacher's version moved past the champion's lineage."""

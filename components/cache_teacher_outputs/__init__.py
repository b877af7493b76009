"""cache_teacher_outputs: the teacher's logits for every row, stored by content."""

"""train_student: distil a student classifier from cached teacher logits."""

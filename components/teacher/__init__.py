"""teacher: fine-tune a base model into a teacher for a dataset and register it (``distillops teacher``)."""

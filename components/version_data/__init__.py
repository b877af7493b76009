"""version_data: read, validate, split and DVC-version a labelled text dataset."""

"""prepare_redistill: when drift is found, the next data version: the reference data plus the production inputs, labelled by the teacher."""

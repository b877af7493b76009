"""promote: register a student that passed the gate and make it the champion."""

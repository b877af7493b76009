"""distillops pipeline steps: one sub-package per step (core.py pure logic, component.py KFP interface)."""

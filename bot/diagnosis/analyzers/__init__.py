"""One analyzer per failure mode of the root-cause taxonomy; each reads a Context, never I/O."""

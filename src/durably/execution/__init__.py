"""The engine's decisions as I/O-free generators of effects: recording, replay, fencing, waits."""

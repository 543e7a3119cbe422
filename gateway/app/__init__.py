"""The gateway as a process: its settings and the composition root that wires its parts."""

"""`fedgate demo`: a whole federation on loopback. `federation` lays out the files; `run` drives the processes."""

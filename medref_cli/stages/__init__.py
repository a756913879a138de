"""One module per stage; each exposes `run(...)` and talks to the others only through artifacts."""

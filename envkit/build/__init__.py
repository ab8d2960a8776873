"""`envkit lock` and `envkit build`: a hash-locked stack for a target GPU and a deterministic image of it."""

"""`envkit matrix`: show what releases declare, and solve for a coherent stack."""

"""`envkit train`: a typed layer over TRL's GRPOTrainer; heavy imports live in runner.py only."""

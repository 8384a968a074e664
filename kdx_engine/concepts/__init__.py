"""Visual concepts of distillation (Cheng et al., METHODS §6): entropy maps, concept counts, trajectories."""

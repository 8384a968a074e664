"""Dark knowledge: outputs softened by a temperature, KL and entropy under it, similar classes."""

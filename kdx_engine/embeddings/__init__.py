"""Teacher and Student embeddings: penultimate features, 2-D projections, k-NN separation, neighbourhood overlap."""

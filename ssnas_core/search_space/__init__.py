"""DARTS search space: operations, cells, the supernet, genotypes and derived networks."""

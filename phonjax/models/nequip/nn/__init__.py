"""The NequIP family in flax.linen + e3nn-jax (irreps bookkeeping, radial basis, interaction, ZBL)."""

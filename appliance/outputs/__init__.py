"""Output formats: one module per format (see appliance.recipe.registry)."""

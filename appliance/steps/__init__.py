"""Build steps: one module per step type (see appliance.recipe.registry)."""

"""The build engine: plans a recipe into chained, cached steps and runs them."""

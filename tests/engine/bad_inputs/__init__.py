"""Bad and hostile inputs to the engine: one file per stage, each case with its exact outcome."""

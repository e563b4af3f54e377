"""Bad and hostile inputs to the Processing algorithms: one file per algorithm family."""

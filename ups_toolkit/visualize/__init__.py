"""Pictures people look at: skeleton renderings (and later curves, confusion matrices, routing maps)."""

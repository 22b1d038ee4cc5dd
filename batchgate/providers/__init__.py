"""The unified adapter layer: one interface, one module per vendor wire format."""

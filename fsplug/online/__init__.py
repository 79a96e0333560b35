"""Online stores: the interface (base) and its implementations, one module each."""

"""Task data as plain tensors: MNIST read once into memory, synthetic tasks made per batch."""

"""The network: blocks, the two-branch model, compiled inference, save/load."""
